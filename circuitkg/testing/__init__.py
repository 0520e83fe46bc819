"""Property-based testing for circuits (public API).

Strategies generate random circuits, models, parameter scales and tiny KGs; assertions compare every
query with brute-force enumeration. The project's own test suite is built from these; use them to
test your own circuits, parameterisations and encoders.
"""

from circuitkg.testing.assertions import (
    assert_conditionals_consistent,
    assert_marginals_consistent,
    assert_matches_interpreter,
    assert_normalised,
)
from circuitkg.testing.brute_force import (
    all_assignments,
    evaluate_naive,
    joint_distribution,
    joint_table,
)
from circuitkg.testing.strategies import (
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
    "all_assignments",
    "assert_conditionals_consistent",
    "assert_marginals_consistent",
    "assert_matches_interpreter",
    "assert_normalised",
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
