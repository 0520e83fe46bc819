"""An input table computed by a graph encoder: ``T = enc(graph, features)``, ``(N, K)``.

:class:`EncodedTable` binds a :class:`~circuitkg.encoders.GraphEncoder` to a
:class:`~circuitkg.encoders.Graph`. The executor sees an ordinary table: ``rows``, ``chunks``, Grams
and contractions all read one full table, computed

* **once per training step** (autograd on, module in training mode): the encoder's
  :meth:`~circuitkg.encoders.GraphEncoder.train_step` from the node states cached at the previous
  step. A new step is recognised by a change of the parameters' state (an optimiser step or a
  load); every query, Gram, view and regulariser of the step reuses the table. When the backward
  pass has run through it (gradient accumulation without a step), the next call recomputes it from
  the same cached states instead of reusing a freed graph.
* **once per parameter state** otherwise (no-grad or eval queries): the encoder's
  :meth:`~circuitkg.encoders.GraphEncoder.encode`, or the cached states for encoders without an
  inductive regime (ReFactor with ``L = ∞``).

The node-state cache is the buffer ``node_states`` (saved in checkpoints; ``has_states`` says
whether it holds states), reset to "none" every ``encoder.reset_every`` training steps; ``steps`` counts training steps. ``encoder_calls`` counts
encoder forwards, for tests and benchmarks. ``on(graph)`` binds the same encoder (shared
parameters) to another graph.

Cost: one encoder forward per step or parameter state, plus ``O(B K)`` per ``rows`` gather; memory:
the ``N x K`` table and the cache.
"""

from __future__ import annotations

import contextlib
from collections.abc import Hashable, Iterator

import torch
from torch import Tensor

from circuitkg.encoders import DecoderObjective, Graph, GraphEncoder, GraphError
from circuitkg.numerics import abs_max
from circuitkg.params.tables import DEFAULT_CHUNK, Table, tensors_token

__all__ = ["EncodedTable"]


class EncodedTable(Table):
    """The table ``encoder(graph)`` (module docstring); ``decoder`` is bound by the model."""

    def __init__(self, encoder: GraphEncoder, graph: Graph) -> None:
        super().__init__(graph.num_nodes, encoder.width)
        self.encoder = encoder
        # the graph is saved beside a checkpoint, not in it (its size fixes the model's shapes)
        self.register_buffer("edges", graph.edges.clone(), persistent=False)
        self.register_buffer("node_states", torch.zeros(graph.num_nodes, encoder.width))
        self.register_buffer("has_states", torch.zeros((), dtype=torch.bool))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))
        self._names = (graph.node_names, graph.relation_names)
        self._num_relations = graph.num_relations
        self.decoder: DecoderObjective | None = None
        self.encoder_calls = 0
        self._generation = 0
        self._override: Tensor | None = None
        self._train: _Pending | None = None
        self._eval: tuple[Hashable, Tensor] | None = None

    # --- the graph ----------------------------------------------------------------------------
    @property
    def graph(self) -> Graph:
        return Graph(self.edges, self.num_values, self._num_relations, *self._names)

    def bind_decoder(self, decoder: DecoderObjective) -> None:
        """The decoder whose objective layer-wise encoders descend (set by the model)."""
        self.decoder = decoder
        self.invalidate()

    def on(self, graph: Graph, features: Tensor | None = None) -> EncodedTable:
        """The same encoder (shared parameters) bound to ``graph``; its decoder is bound anew."""
        if not self.encoder.inductive:
            raise GraphError(
                f"{type(self.encoder).__name__} without a reset schedule (L = ∞) is transductive: "
                "its inference reads node states cached in training, and a new graph has none"
            )
        out = EncodedTable(self.encoder.on(graph, features), graph)
        return out.to(device=self.edges.device, dtype=self.dtype)

    @property
    def dtype(self) -> torch.dtype:
        return self.node_states.dtype

    # --- the table ---------------------------------------------------------------------------
    def full(self) -> Tensor:
        if self._override is not None:
            return self._override
        if self.training and torch.is_grad_enabled():
            return self._training_table()
        return self._inference_table()

    def rows(self, index: Tensor) -> Tensor:
        return self.full()[index]

    def chunks(self, chunk_size: int = DEFAULT_CHUNK) -> Iterator[Tensor]:
        table = self.full()
        yield from (table,) if self.num_values <= chunk_size else torch.split(table, chunk_size)

    def abs_max(self) -> Tensor:
        value = abs_max(self.full().detach())
        return value.clamp_min(torch.finfo(value.dtype).tiny)

    @contextlib.contextmanager
    def evaluating_at(self, states: Tensor) -> Iterator[None]:
        """Within the block the table is ``states`` (how an encoder evaluates its decoder at
        intermediate node states)."""
        previous = self._override
        self._override = states
        try:
            yield
        finally:
            self._override = previous

    def invalidate(self) -> None:
        """Forget computed tables (the graph, the decoder or a parameter changed in place)."""
        self._train, self._eval = None, None
        self._generation += 1

    # --- hooks ---------------------------------------------------------------------------------
    @property
    def supports_positive_init(self) -> bool:
        return self.encoder.supports_positive_init

    def init_positive_(self, mean: float, noise: float, shift: slice | None = None) -> None:
        self.encoder.init_positive_(mean, noise, shift)
        self.has_states.fill_(False)
        self.invalidate()

    def kronecker_factor(self, width: int) -> Table:
        raise GraphError(
            "an encoded table has no Kronecker factors: give the encoder a Kronecker output "
            "instead (KroneckerTable.square(EncodedTable(...)))"
        )

    def state_token(self) -> Hashable:
        override = None if self._override is None else id(self._override)
        return (
            self._generation,
            override,
            tensors_token(self.encoder.parameters()),
            self._decoder_token(),
        )

    def _decoder_token(self) -> Hashable:
        return None if self.decoder is None else self.decoder.token()

    # --- the two regimes -------------------------------------------------------------------------
    def _training_table(self) -> Tensor:
        token = self.state_token()
        pending = self._train
        if pending is not None and pending.token == token and not pending.consumed:
            return pending.table
        if pending is not None and pending.token == token:
            states = pending.states  # backward ran without a step: recompute, do not advance
        else:
            # ``steps_per_layer = k``: k optimiser steps per depth, each recomputing the layer
            # from the same input states with the current parameters (paper 000 advances the
            # cache once per full pass over the triples, "every L full batches")
            k = int(getattr(self.encoder, "steps_per_layer", 1))
            step = int(self.steps)
            if step % k == 0 or pending is None:
                reset = self.encoder.reset_every
                layer = step // k
                fresh = not self.has_states or (reset is not None and layer % reset == 0)
                states = None if fresh else self.node_states.clone()
            else:
                states = pending.states
            self.steps += 1
        table = self.encoder.train_step(self.graph, states, self.decoder)
        self.encoder_calls += 1
        with torch.no_grad():
            self.node_states.copy_(table.detach())
        self.has_states.fill_(True)
        self._train = _Pending(token, table, states)
        if table.requires_grad:
            # the hook holds the flag only: a hook holding the pending step (which holds the
            # table) made a reference cycle, and each step's autograd graph lived until the
            # cyclic garbage collector ran (22 GB after an hour of CoDEx-S with L = ∞)
            table.register_hook(self._train.flag.set)
        return table

    def _inference_table(self) -> Tensor:
        if not self.encoder.inductive:
            if not self.has_states:
                raise GraphError(
                    f"{type(self.encoder).__name__} with L = ∞ reads the node-state cache, "
                    "which is empty: train the model first"
                )
            return self.node_states
        token = (self.state_token(), torch.is_grad_enabled())
        if self._eval is not None and self._eval[0] == token:
            return self._eval[1]
        table = self.encoder.encode(self.graph, self.decoder)
        self.encoder_calls += 1
        self._eval = (token, table)
        return table

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, edges={len(self.edges)}"


class _Pending:
    """The table of the current training step, the states it came from, and whether a backward
    pass has run through it (``flag``, set by a hook on the table)."""

    def __init__(self, token: Hashable, table: Tensor, states: Tensor | None) -> None:
        self.token, self.table, self.states, self.flag = token, table, states, _Flag()

    @property
    def consumed(self) -> bool:
        return self.flag.value


class _Flag:
    """A boolean a gradient hook sets, holding nothing else."""

    def __init__(self) -> None:
        self.value = False

    def set(self, grad: Tensor) -> None:
        self.value = True
