"""Evaluation: filtered link-prediction ranking (all entities, or GraIL's sampled candidates),
calibration, test log-likelihood, Sem@k and triple classification (per-relation dev thresholds)."""

from circuitkg.eval.calibration import (
    ReliabilityTable,
    expected_calibration_error,
    reliability_table,
)
from circuitkg.eval.grail import (
    SampledRankingResult,
    evaluate_sampled_ranking,
    sample_negatives,
    uniform_log_likelihood,
)
from circuitkg.eval.likelihood import mean_log_likelihood
from circuitkg.eval.ookb import OOKBEvaluation, evaluate_ookb, evaluate_unseen_ranking
from circuitkg.eval.ranking import (
    FilterIndex,
    RankingResult,
    ScoreAll,
    evaluate_ranking,
    filtered_ranks,
    keyword_scorer,
    metrics_from_ranks,
)
from circuitkg.eval.runner import EvaluationResult, evaluate
from circuitkg.eval.semantic import AllowedEntities, SemanticResult, semantic_at_k
from circuitkg.eval.triple_classification import (
    TripleClassificationResult,
    best_threshold,
    choose_thresholds,
    classification_accuracy,
    triple_classification,
    triple_values,
)

__all__ = [
    "AllowedEntities",
    "EvaluationResult",
    "FilterIndex",
    "OOKBEvaluation",
    "RankingResult",
    "ReliabilityTable",
    "SampledRankingResult",
    "ScoreAll",
    "SemanticResult",
    "TripleClassificationResult",
    "best_threshold",
    "choose_thresholds",
    "classification_accuracy",
    "evaluate",
    "evaluate_ranking",
    "evaluate_sampled_ranking",
    "expected_calibration_error",
    "filtered_ranks",
    "keyword_scorer",
    "mean_log_likelihood",
    "metrics_from_ranks",
    "reliability_table",
    "sample_negatives",
    "semantic_at_k",
    "triple_classification",
    "triple_values",
    "uniform_log_likelihood",
    "evaluate_ookb",
    "evaluate_unseen_ranking",
]
