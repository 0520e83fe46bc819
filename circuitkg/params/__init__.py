"""Parameterisations: how input-layer tables and sum-layer weights are computed."""

from circuitkg.params.derived import KroneckerRowTable, RowTable, SummedTable
from circuitkg.params.encoded import EncodedTable
from circuitkg.params.fixed import ConstantTable, IndicatorTable
from circuitkg.params.kronecker import KroneckerTable
from circuitkg.params.learned import FreeTable, PositiveTable
from circuitkg.params.tables import Table
from circuitkg.params.views import ColumnView, FeatureTable
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
