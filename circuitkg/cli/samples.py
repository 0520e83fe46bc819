"""Writing sampled triples with their names: the back end of the ``circuitkg sample`` command."""

from __future__ import annotations

from pathlib import Path
from typing import TextIO

import torch
from torch import Tensor

from circuitkg.compilers.base import KG_VARIABLES, check_kg_circuit
from circuitkg.data.kg import KnowledgeGraph
from circuitkg.workflow import resolve_given


def write_samples_tsv(
    compiled,
    kg: KnowledgeGraph,
    n: int,
    path: str | Path | TextIO,
    given: dict[str, int | str | Tensor] | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Draw ``n`` triples from ``compiled`` and write ``subject<TAB>relation<TAB>object`` lines.

    ``given`` values may be names (``{"s": "Barack_Obama"}``) or ids. The circuit must be over
    ``s, r, o`` with the KG's vocabulary sizes; it is a ``CompiledCircuit`` or a
    ``ConstrainedCircuit`` (samples are drawn with its own ``sample`` method). ``path`` is a file
    path or an open text stream (e.g. ``sys.stdout``). Returns the ``(n, 3)`` id triples
    (``s, r, o``).
    """
    check_kg_circuit(compiled, kg.num_entities, kg.num_relations, f"knowledge graph {kg.name!r}")
    ids = compiled.sample(n, given=resolve_given(kg, given), generator=generator)
    triples = ids[:, [compiled.variables.index(v) for v in KG_VARIABLES]].cpu()
    entities, relations = kg.id_to_entity, kg.id_to_relation
    lines = [f"{entities[s]}\t{relations[r]}\t{entities[o]}\n" for s, r, o in triples.tolist()]
    if hasattr(path, "write"):
        path.write("".join(lines))
    else:
        Path(path).write_text("".join(lines), encoding="utf-8")
    return triples
