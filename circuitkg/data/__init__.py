"""Knowledge-graph datasets: triple files to vocabularies and integer triple tensors.

``load("umls")`` returns a :class:`KnowledgeGraph` for a shipped or external benchmark;
``load_folder(path)`` reads any folder of ``train``/``valid``/``test`` triple files;
``from_triples(triples)`` builds one from in-memory labelled triples and ``split(triples)`` divides
triples keeping every entity and relation in train;
``load_inductive("fb237_v1")`` returns an :class:`InductiveSplit` (GraIL's inductive benchmarks);
``load_ookb("wn11", setting="head", size=1000)`` returns an :class:`OOKBSplit` and
``unseen_entity_split(kg, "head", 0.05)`` an :class:`UnseenEntitySplit` (unseen entities; each a
:class:`SeenFirstSplit`).
"""

from circuitkg.data.build import from_triples, split
from circuitkg.data.inductive import (
    INDUCTIVE_DATASETS,
    SHIPPED_INDUCTIVE_DATASETS,
    InductiveSplit,
    load_inductive,
)
from circuitkg.data.kg import (
    DataArgumentError,
    DataFormatError,
    DatasetNotFoundError,
    KnowledgeGraph,
    UnknownNameError,
)
from circuitkg.data.loaders import (
    DATA_ENV_VAR,
    EXTERNAL_DATASETS,
    SHIPPED_DATASETS,
    DuplicateTriplesWarning,
    HeaderLineWarning,
    UnseenTriplesWarning,
    available_datasets,
    load,
    load_folder,
)
from circuitkg.data.ookb import (
    OOKB_DATASETS,
    OOKB_NAMES,
    OOKB_SETTINGS,
    OOKB_SIZES,
    LabelledTriples,
    OOKBSplit,
    load_ookb,
    load_ookb_named,
)
from circuitkg.data.seen_first import SeenFirstSplit
from circuitkg.data.unseen_split import UnseenEntitySplit, unseen_entity_split

__all__ = [
    "DataArgumentError",
    "DatasetNotFoundError",
    "DATA_ENV_VAR",
    "EXTERNAL_DATASETS",
    "INDUCTIVE_DATASETS",
    "SHIPPED_DATASETS",
    "SHIPPED_INDUCTIVE_DATASETS",
    "DataFormatError",
    "InductiveSplit",
    "KnowledgeGraph",
    "LabelledTriples",
    "OOKBSplit",
    "OOKB_DATASETS",
    "OOKB_NAMES",
    "OOKB_SETTINGS",
    "OOKB_SIZES",
    "UnknownNameError",
    "DuplicateTriplesWarning",
    "HeaderLineWarning",
    "UnseenTriplesWarning",
    "available_datasets",
    "from_triples",
    "load",
    "load_folder",
    "load_inductive",
    "load_ookb",
    "load_ookb_named",
    "unseen_entity_split",
    "SeenFirstSplit",
    "UnseenEntitySplit",
    "split",
]
