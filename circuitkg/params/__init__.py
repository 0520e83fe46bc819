"""Parameterisations: how input-layer tables and sum-layer weights are computed."""

from circuitkg.params.encoded import EncodedTable
from circuitkg.params.kronecker import KroneckerTable
from circuitkg.params.tables import (
    ColumnView,
    ConstantTable,
    FeatureTable,
    FreeTable,
    IndicatorTable,
    KroneckerRowTable,
    PositiveTable,
    RowTable,
    SummedTable,
    Table,
)
from circuitkg.params.weights import (
    FixedWeight,
    FreeWeight,
    KroneckerWeight,
    PositiveWeight,
    Weight,
)

__all__ = [
    "ColumnView",
    "ConstantTable",
    "EncodedTable",
    "FeatureTable",
    "FixedWeight",
    "FreeTable",
    "FreeWeight",
    "IndicatorTable",
    "KroneckerRowTable",
    "KroneckerTable",
    "KroneckerWeight",
    "PositiveTable",
    "PositiveWeight",
    "RowTable",
    "SummedTable",
    "Table",
    "Weight",
]
