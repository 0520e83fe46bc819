"""Evaluation: filtered link-prediction ranking, calibration and test log-likelihood."""

from circuitkg.eval.calibration import (
    ReliabilityTable,
    expected_calibration_error,
    reliability_table,
)
from circuitkg.eval.likelihood import mean_log_likelihood
from circuitkg.eval.ranking import (
    FilterIndex,
    RankingResult,
    ScoreAll,
    evaluate_ranking,
    filtered_ranks,
    keyword_scorer,
    metrics_from_ranks,
)

__all__ = [
    "FilterIndex",
    "RankingResult",
    "ReliabilityTable",
    "ScoreAll",
    "evaluate_ranking",
    "expected_calibration_error",
    "filtered_ranks",
    "keyword_scorer",
    "mean_log_likelihood",
    "metrics_from_ranks",
    "reliability_table",
]
