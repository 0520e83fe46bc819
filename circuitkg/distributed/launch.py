"""Starting processes: ``torchrun`` for the command line, :func:`spawn` for Python and tests.

* :func:`torchrun_command` / :func:`relaunch`: ``circuitkg train ... --nproc N`` runs itself again
  as ``python -m torch.distributed.run --standalone --nproc-per-node N -m circuitkg train ...``
  (without ``--nproc``), so every multi-process run, whether started by ``--nproc`` or by
  ``torchrun -m circuitkg train`` directly, goes through torch's own launcher and its rendezvous;
  torchrun stops the other workers when one fails and reports the failure.
* :func:`spawn`: ``fn(world, *args)`` in ``nproc`` fresh local processes (the ``spawn`` start
  method, a free port on localhost), each rank's return value back to the caller. A rank that
  raises, or dies without a result, makes :func:`spawn` raise :class:`ProcessFailedError` with
  what every failed rank reported; the surviving ranks stop on their own (their next collective
  fails, :mod:`~circuitkg.distributed.world`) and are terminated if they have not after ``grace``
  seconds.

Results travel as ``torch.save`` bytes through a queue (no shared-memory handles that would
outlive their process); keep them small (tensors of a test, figures of a measurement).
"""

from __future__ import annotations

import io
import os
import queue
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.multiprocessing as mp

from circuitkg.distributed.world import World, close_world, free_port, init_world
from circuitkg.errors import DistributedError


class ProcessFailedError(DistributedError):
    """One or more spawned ranks raised or died; ``failures`` maps each to what it reported."""

    def __init__(self, failures: dict[int, str]) -> None:
        self.failures = dict(sorted(failures.items()))
        listed = "; ".join(f"rank {r}: {text}" for r, text in self.failures.items())
        super().__init__(f"{len(failures)} process(es) failed: {listed}")


def torchrun_command(nproc: int, argv: Sequence[str]) -> list[str]:
    """The ``torchrun`` command line that runs ``circuitkg ARGV`` in ``nproc`` local processes."""
    return [
        sys.executable, "-m", "torch.distributed.run", "--standalone",
        f"--nproc-per-node={nproc}", "-m", "circuitkg", *argv,
    ]  # fmt: skip


def relaunch(nproc: int, argv: Sequence[str]) -> int:
    """Run ``circuitkg ARGV`` under ``torchrun`` with ``nproc`` processes; its exit code."""
    return subprocess.run(torchrun_command(nproc, argv), check=False).returncode


def spawn(
    fn: Callable[..., Any],
    nproc: int,
    *args: Any,
    device: str = "cpu",
    timeout: float = 300.0,
    collective_timeout: float = 60.0,
    grace: float = 30.0,
) -> list[Any]:
    """``[fn(world, *args) for each rank]``, run in ``nproc`` processes (module docstring).

    ``fn`` must be importable by name (a module-level function). ``timeout`` bounds the whole
    run, ``collective_timeout`` each collective inside it. Each process runs one torch thread.
    """
    if nproc < 1:
        raise DistributedError(f"nproc must be positive, got {nproc}")
    ctx = mp.get_context("spawn")
    results: queue.Queue = ctx.Queue()
    port = free_port()
    procs = [
        ctx.Process(
            target=_worker,
            args=(fn, rank, nproc, port, args, results, device, collective_timeout),
            daemon=True,
        )
        for rank in range(nproc)
    ]
    for p in procs:
        p.start()
    values: dict[int, Any] = {}
    failures: dict[int, str] = {}
    deadline = time.monotonic() + timeout
    while len(values) + len(failures) < nproc:
        now = time.monotonic()
        if now > deadline:
            for rank in range(nproc):
                if rank not in values and rank not in failures:
                    failures[rank] = f"no result within {timeout:.0f} s"
            break
        try:
            rank, error, payload = results.get(timeout=0.2)
        except queue.Empty:
            for rank, p in enumerate(procs):
                if p.exitcode is not None and rank not in values and rank not in failures:
                    time.sleep(0.2)  # its result may still be in the pipe
                    if results.empty():
                        failures[rank] = f"exited with code {p.exitcode} without a result"
            if failures:
                deadline = min(deadline, time.monotonic() + grace)
            continue
        if error is None:
            values[rank] = torch.load(io.BytesIO(payload), weights_only=False)
        else:
            failures[rank] = error
            deadline = min(deadline, time.monotonic() + grace)
    for p in procs:
        p.join(timeout=1.0)
        if p.is_alive():
            p.terminate()
            p.join()
    if failures:
        raise ProcessFailedError(failures)
    return [values[r] for r in range(nproc)]


def _worker(
    fn: Callable[..., Any],
    rank: int,
    size: int,
    port: int,
    args: tuple,
    results: queue.Queue,
    device: str,
    collective_timeout: float,
) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(size),
        LOCAL_RANK=str(rank),
    )  # fmt: skip
    torch.set_num_threads(1)
    try:
        world: World = init_world(device, timeout=collective_timeout)
        buffer = io.BytesIO()
        torch.save(fn(world, *args), buffer)
        results.put((rank, None, buffer.getvalue()))
    except BaseException as err:  # reported to the parent, which raises for it
        results.put((rank, f"{type(err).__name__}: {err}", None))
    finally:
        close_world()
