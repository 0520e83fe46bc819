"""Property-based testing for circuits (public API).

Strategies generate random circuits, models, parameter scales and tiny KGs; assertions compare every
query with brute-force enumeration. The project's own test suite is built from these; use them to
test your own circuits, parameterisations and encoders.

The kit needs the ``testing`` extra (hypothesis for the strategies, scipy for the chi-square test
of :func:`assert_samples_follow`): ``pip install 'circuitkg[testing]'``. Without it, importing
``circuitkg.testing`` raises :class:`MissingExtraError` saying so; the rest of circuitkg needs
neither.
"""

import importlib

from circuitkg.errors import MissingExtraError


def _missing(names: tuple[str, ...]) -> list[str]:
    absent = []
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError:
            absent.append(name)
    return absent


_missing = _missing(("hypothesis", "scipy"))  # the testing extra of pyproject.toml
if _missing:
    raise MissingExtraError(
        f"circuitkg.testing needs {' and '.join(_missing)}, which "
        f"{'is' if len(_missing) == 1 else 'are'} not installed: pip install 'circuitkg[testing]'"
    )

# the kit's modules import hypothesis and scipy: after the check
from circuitkg.testing.assertions import (  # noqa: E402
    assert_conditionals_consistent,
    assert_marginals_consistent,
    assert_matches_interpreter,
    assert_normalised,
)
from circuitkg.testing.brute_force import (  # noqa: E402
    all_assignments,
    evaluate_naive,
    joint_distribution,
    joint_table,
)
from circuitkg.testing.samples import assert_samples_follow, chi_square  # noqa: E402
from circuitkg.testing.strategies import (  # noqa: E402
    circuits,
    kge_models,
    model_forms,
    parameter_scales,
    rescale,
    tiny_graphs,
    tiny_inductive_splits,
    tiny_kgs,
)

__all__ = [
    "MissingExtraError",
    "all_assignments",
    "assert_conditionals_consistent",
    "assert_marginals_consistent",
    "assert_matches_interpreter",
    "assert_normalised",
    "assert_samples_follow",
    "chi_square",
    "circuits",
    "evaluate_naive",
    "joint_distribution",
    "joint_table",
    "kge_models",
    "model_forms",
    "parameter_scales",
    "rescale",
    "tiny_graphs",
    "tiny_inductive_splits",
    "tiny_kgs",
]
