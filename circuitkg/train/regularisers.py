"""Regularisers on the embeddings a batch touches.

N3 (Lacroix, Usunier and Obozinski, ICML 2018): ``λ / B Σ_b Σ_f Σ_k |f_bk|³`` over the factors ``f``
of each triple (its subject, relation and object rows), the nuclear 3-norm's weighted variational
form. A factor is what the model's :meth:`~circuitkg.compilers.KGEModel.n3_factor` makes of the
rows: the rows themselves by default, for ComplEx the moduli ``sqrt(Re² + Im²)`` of the complex
coordinates, as in the paper. The rows are those of the input layers' parameter tables
(:meth:`~circuitkg.params.Table.parameter_table`: views such as ComplEx's column layouts or TransE's
features read their base's), each table counted once per variable, so DistMult's shared entity
table contributes the subject and the object row.
"""

from __future__ import annotations

from torch import Tensor

from circuitkg.compilers import KGEModel

_COLUMN = {"s": 0, "r": 1, "o": 2}


def embedding_factors(model: KGEModel, triples: Tensor) -> list[Tensor]:
    """The embedding rows of ``triples`` (B, 3): one ``(B, width)`` tensor per (variable, table)."""
    seen: set[tuple[str, int]] = set()
    factors = []
    for layer in model.circuit().input_layers():
        if layer.variable is None:
            continue
        table = layer.table.parameter_table()
        key = (layer.variable, id(table))
        if key in seen:
            continue
        seen.add(key)
        rows = table.rows(triples[:, _COLUMN[layer.variable]])
        factors.append(model.n3_factor(rows))
    return factors


def n3(model: KGEModel, triples: Tensor) -> Tensor:
    """``Σ_f Σ_k |f_bk|³`` averaged over the batch (multiply by λ to use as a penalty)."""
    factors = embedding_factors(model, triples)
    return sum(f.abs().pow(3).sum() for f in factors) / triples.shape[0]
