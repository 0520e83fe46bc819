"""Knowledge-graph datasets: triple files to vocabularies and integer triple tensors.

``load("umls")`` returns a :class:`KnowledgeGraph` for a shipped or external benchmark;
``load_folder(path)`` reads any folder of ``train``/``valid``/``test`` triple files.
"""

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
    "SHIPPED_DATASETS",
    "DataFormatError",
    "KnowledgeGraph",
    "UnknownNameError",
    "UnseenTriplesWarning",
    "available_datasets",
    "load",
    "load_folder",
]
