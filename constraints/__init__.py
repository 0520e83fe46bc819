"""Logical constraints compiled to constraint circuits (``circuitkg.constraints``).

Domain schemas (entity types and per-relation subject/object signatures) compile here to
deterministic, smooth, decomposable circuits ``c(s, r, o) ∈ {0, 1}`` compatible with the KGE
circuits of :mod:`circuitkg.compilers`, so ``p ∝ φ² · c`` keeps exact queries. Filled by the
domain-schema issue.
"""
