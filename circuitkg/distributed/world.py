"""The process group of a multi-process run: who we are, where we compute, how we talk.

A :class:`World` is one process's view of a ``torch.distributed`` group: its ``rank`` among ``size``
processes, its device (``cuda:LOCAL_RANK`` under NCCL, else CPU under gloo) and the timeout of every
collective. :func:`init_world` reads what ``torchrun`` (or :func:`~circuitkg.distributed.launch.spawn`)
puts in the environment: ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``,
``MASTER_PORT``.

**Failure.** Every collective runs inside :meth:`World.collective`, which turns the backend's
errors (a peer closed its sockets because it died, or a peer did not answer within ``timeout``)
into :class:`~circuitkg.errors.DistributedError` naming the operation and this rank, so no process
hangs on a dead peer: gloo raises as soon as the peer's connection drops, and at the latest after
``timeout`` seconds (``CIRCUITKG_DIST_TIMEOUT``, 300 by default). :meth:`World.barrier` is gloo's
monitored barrier, which names the ranks that did not arrive.

**Cost.** ``all_reduce`` of ``b`` bytes moves about ``2 b (N - 1) / N`` bytes in and out of each
process (ring), ``all_gather`` of ``b`` bytes per process ``b (N - 1)``. :data:`TRAFFIC` counts the
payload bytes (``b``) this process hands to collectives, which the measurements read.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import Tensor

from circuitkg.errors import DistributedError

#: environment variable: seconds a collective may wait for its peers
TIMEOUT_ENV = "CIRCUITKG_DIST_TIMEOUT"
DEFAULT_TIMEOUT = 300.0
_OPS = {"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX, "min": dist.ReduceOp.MIN}
#: payload bytes this process has handed to collectives, and how many (read by measurements)
TRAFFIC = {"bytes": 0, "calls": 0}


@dataclass(frozen=True)
class World:
    """One process of a ``torch.distributed`` group (module docstring)."""

    rank: int
    size: int
    device: torch.device
    timeout: float

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes checkpoints and prints."""
        return self.rank == 0

    @contextmanager
    def collective(self, what: str) -> Iterator[None]:
        """Run a collective; a backend failure becomes :class:`DistributedError`."""
        try:
            yield
        except RuntimeError as err:  # dist.DistError is one
            raise DistributedError(
                f"rank {self.rank} of {self.size}: {what} failed: a peer process died or did not "
                f"answer within {self.timeout:.0f} s ({type(err).__name__}: {_first_line(err)})"
            ) from err

    def all_reduce(self, x: Tensor, op: str = "sum") -> Tensor:
        """``x`` reduced over all processes, in place (``op``: sum, max or min); returns ``x``."""
        _count(x)
        with self.collective(f"all_reduce({op}) of {tuple(x.shape)}"):
            dist.all_reduce(x, op=_OPS[op])
        return x

    def all_gather(self, x: Tensor) -> Tensor:
        """``(size, *x.shape)``: every process's ``x`` (equal shapes) stacked by rank."""
        parts = [torch.empty_like(x) for _ in range(self.size)]
        _count(x)
        with self.collective(f"all_gather of {tuple(x.shape)}"):
            dist.all_gather(parts, x.contiguous())
        return torch.stack(parts)

    def barrier(self, what: str = "barrier") -> None:
        """Wait for every process; with gloo a monitored barrier that names absent ranks."""
        with self.collective(what):
            if dist.get_backend() == "gloo":
                dist.monitored_barrier(timeout=timedelta(seconds=self.timeout), wait_all_ranks=True)
            else:
                dist.barrier()


def launched() -> bool:
    """Whether this process was started by a launcher for more than one process
    (``WORLD_SIZE > 1`` in the environment, as ``torchrun`` sets it)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_world(device: str | torch.device = "cpu", timeout: float | None = None) -> World:
    """Join the process group the environment describes (module docstring) and return this
    process's :class:`World`; NCCL when ``device`` is CUDA (each process on ``cuda:LOCAL_RANK``),
    gloo otherwise. Joining twice returns the group already joined."""
    device = torch.device(device)
    if timeout is None:
        timeout = float(os.environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT))
    missing = [
        k for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ
    ]
    if missing:
        raise DistributedError(
            f"cannot join a process group: {', '.join(missing)} not set (start the processes "
            "with torchrun, `circuitkg train --nproc N`, or circuitkg.distributed.spawn)"
        )
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        try:
            dist.init_process_group(backend, timeout=timedelta(seconds=timeout))
        except (RuntimeError, ValueError) as err:
            raise DistributedError(
                f"cannot join the {backend} process group at {os.environ['MASTER_ADDR']}:"
                f"{os.environ['MASTER_PORT']} as rank {os.environ['RANK']} of "
                f"{os.environ['WORLD_SIZE']}: {_first_line(err)}"
            ) from err
    world = World(dist.get_rank(), dist.get_world_size(), device, timeout)
    world.barrier("joining the process group")
    return world


def close_world() -> None:
    """Leave the process group (a no-op outside one)."""
    if dist.is_initialized():
        dist.destroy_process_group()


def free_port() -> int:
    """A TCP port on localhost that nothing listens on now (for ``MASTER_PORT``)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _count(x: Tensor) -> None:
    TRAFFIC["bytes"] += x.numel() * x.element_size()
    TRAFFIC["calls"] += 1


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
