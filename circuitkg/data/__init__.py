"""Knowledge-graph datasets: triple files to vocabularies and integer triple tensors.

``load("umls")`` returns a :class:`KnowledgeGraph` for a shipped or external benchmark;
``load_folder(path)`` reads any folder of ``train``/``valid``/``test`` triple files;
``load_inductive("fb237_v1")`` returns an :class:`InductiveSplit` (GraIL's inductive benchmarks).
"""

from circuitkg.data.inductive import (
    INDUCTIVE_DATASETS,
    SHIPPED_INDUCTIVE_DATASETS,
    InductiveSplit,
    load_inductive,
)
from circuitkg.data.kg import DataFormatError, KnowledgeGraph, UnknownNameError
from circuitkg.data.loaders import (
    DATA_ENV_VAR,
    EXTERNAL_DATASETS,
    SHIPPED_DATASETS,
    UnseenTriplesWarning,
    available_datasets,
    load,
    load_folder,
)

__all__ = [
    "DATA_ENV_VAR",
    "EXTERNAL_DATASETS",
    "INDUCTIVE_DATASETS",
    "SHIPPED_DATASETS",
    "SHIPPED_INDUCTIVE_DATASETS",
    "DataFormatError",
    "InductiveSplit",
    "KnowledgeGraph",
    "UnknownNameError",
    "UnseenTriplesWarning",
    "available_datasets",
    "load",
    "load_folder",
    "load_inductive",
]
