"""The ``torchrun`` process group, in one place: every command that may run as several processes (``lineage add``,
``universal train`` / ``add``, ``predict --batch``) enters :func:`process_group`, and the training loops ask
:func:`distributed` / :func:`rank` whether they run in one.

- Launched by ``torchrun`` with ``WORLD_SIZE`` > 1 (:func:`launched_world_size`), the process joins the group:
  gloo on the CPU, nccl on CUDA with each process on its ``LOCAL_RANK`` GPU; ``timeout`` bounds a collective's
  wait (torch's default when None). The group is left (destroyed) on exit, whatever happened inside; a process
  that leaves with an error first waits for its peers on this machine that leave without one to exit, so that
  ``torchrun`` reports the failing process alone instead of also killing and listing a peer still shutting down.
- Without ``torchrun`` (or ``WORLD_SIZE`` 1) nothing is joined: the process is rank 0 of 1 and leads.
- Already in a group (e.g. a test that made one), that group is used and left as it is on exit.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist


def launched_world_size() -> int:
    """How many processes ``torchrun`` launched (``WORLD_SIZE``; 1 without ``torchrun``), known before joining."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def distributed() -> bool:
    """True inside a ``torchrun`` process group (gloo on the CPU, nccl on GPUs)."""
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    """This process's rank in the process group (0 outside one)."""
    return dist.get_rank() if distributed() else 0


def world_size() -> int:
    """How many processes the process group holds (1 outside one)."""
    return dist.get_world_size() if distributed() else 1


@dataclass(frozen=True)
class ProcessShare:
    """This process's place in the run: its ``rank`` of ``world`` processes (0 of 1 outside a process group);
    the ``lead`` (rank 0) reports and writes."""

    rank: int
    world: int

    @property
    def lead(self) -> bool:
        return self.rank == 0


def _join(device: str, timeout: timedelta | None) -> bool:
    """Join the group of a ``torchrun`` launch; whether this call joined it (and so must leave it)."""
    if distributed() or launched_world_size() < 2:
        return False
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl" if cuda else "gloo", timeout=timeout)
    return True


@contextmanager
def process_group(device: str, timeout: timedelta | None = None) -> Iterator[ProcessShare]:
    """Inside: this process is in the ``torchrun`` process group when launched so (see the module docstring),
    and the block gets its :class:`ProcessShare`; a group joined here is left on exit. Enter it before loading
    the model (nccl picks the process's GPU)."""
    joined = _join(device, timeout)
    failing = False
    try:
        yield ProcessShare(rank(), world_size())
    except BaseException:
        failing = True
        raise
    finally:
        if joined:
            peers = _local_peers_exiting_cleanly(failing)
            dist.destroy_process_group()
            if failing:  # let them exit first: torchrun then reports only this process, the one that failed
                _wait_for_exit(peers)


EXIT_WAIT_S = 60.0
"""Longest a failing process waits for its peers on this machine to exit before it exits itself."""


def _local_peers_exiting_cleanly(failing: bool) -> list[int]:
    """PIDs of the group's processes on this machine that leave it without an error (every process calls this as
    it leaves: a collective); [] when the group cannot answer (a peer died)."""
    me = (socket.gethostname(), os.getpid(), failing)
    everyone: list = [None] * world_size()
    try:
        dist.all_gather_object(everyone, me)
    except Exception:  # noqa: BLE001 - a broken group: nobody to wait for
        return []
    return [pid for host, pid, bad in everyone if host == me[0] and pid != me[1] and not bad]


def _wait_for_exit(pids: list[int]) -> None:
    """Return once every process of ``pids`` has exited, or after :data:`EXIT_WAIT_S`."""
    deadline = time.monotonic() + EXIT_WAIT_S
    while pids and time.monotonic() < deadline:
        pids = [pid for pid in pids if _running(pid)]
        time.sleep(0.05)


def _running(pid: int) -> bool:
    """Whether process ``pid`` still runs; on Linux a zombie (exited, not yet reaped by torchrun) has exited."""
    if Path("/proc/self").exists():
        try:
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except OSError:
            return False
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def barrier() -> None:
    """Wait for every process of the group (nothing outside one)."""
    if distributed():
        dist.barrier()
