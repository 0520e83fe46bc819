"""Beyond one process: data-parallel training and entity-sharded exact queries on torch.distributed.

GeKCs distribute easily: ``Z`` and every marginalisation go through ``K x K`` Gram matrices, which
are sums over entities, so an entity table split row-wise needs an all-reduce of ``K x K`` matrices
for exact ``log Z``, and a 1-vs-all conditional is per-shard scores plus a distributed
log-sum-exp. Processes are started by ``torchrun`` (``circuitkg train --nproc N`` runs it), or by
:func:`spawn` from Python; gloo on CPU, NCCL on CUDA.

* :mod:`~circuitkg.distributed.world`: the process group, collectives that fail with
  :class:`~circuitkg.errors.DistributedError` instead of hanging;
* :mod:`~circuitkg.distributed.launch`: ``torchrun`` for the CLI, :func:`spawn` for Python;
* :mod:`~circuitkg.distributed.data_parallel`: :class:`DataParallel` (the trainer's hook) and
  :func:`train_distributed`;
* :mod:`~circuitkg.distributed.sharded_table`: :class:`ShardedTable`, a table of which each rank
  holds its rows;
* :mod:`~circuitkg.distributed.sharded`: :func:`shard_model` and :class:`ShardedCircuit` (log Z,
  log p, marginals, PLL, per-shard conditionals, top-k);
* :mod:`~circuitkg.distributed.sharded_sampling`: exact samples through a sharded Gram tree;
* :mod:`~circuitkg.distributed.sharded_training`: :func:`train_sharded`, each rank updating its
  own entity rows (no checkpoints yet).

The cost model and measurements: ``docs/scaling.md``.
"""

from circuitkg.distributed.data_parallel import DataParallel, train_distributed
from circuitkg.distributed.launch import ProcessFailedError, relaunch, spawn, torchrun_command
from circuitkg.distributed.sharded import ShardedCircuit, shard_model
from circuitkg.distributed.sharded_sampling import sample_sharded
from circuitkg.distributed.sharded_table import Partition, ShardedTable
from circuitkg.distributed.sharded_training import EntitySharded, train_sharded
from circuitkg.distributed.world import World, close_world, free_port, init_world, launched

__all__ = [
    "DataParallel",
    "EntitySharded",
    "Partition",
    "ProcessFailedError",
    "ShardedCircuit",
    "ShardedTable",
    "World",
    "close_world",
    "free_port",
    "init_world",
    "launched",
    "relaunch",
    "sample_sharded",
    "shard_model",
    "spawn",
    "torchrun_command",
    "train_distributed",
    "train_sharded",
]
