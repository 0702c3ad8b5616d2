"""The ``torchrun`` process group, in one place: every command that may run as several processes (``lineage add``,
``universal train`` / ``add``, ``predict --batch``) enters :func:`process_group`, and the training loops ask
:func:`distributed` / :func:`rank` whether they run in one.

- Launched by ``torchrun`` with ``WORLD_SIZE`` > 1 (:func:`launched_world_size`), the process joins the group:
  gloo on the CPU, nccl on CUDA with each process on its ``LOCAL_RANK`` GPU; ``timeout`` bounds a collective's
  wait (torch's default when None). The group is left (destroyed) on exit, whatever happened inside.
- Without ``torchrun`` (or ``WORLD_SIZE`` 1) nothing is joined: the process is rank 0 of 1 and leads.
- Already in a group (e.g. a test that made one), that group is used and left as it is on exit.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

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
    try:
        yield ProcessShare(rank(), world_size())
    finally:
        if joined:
            dist.destroy_process_group()


def barrier() -> None:
    """Wait for every process of the group (nothing outside one)."""
    if distributed():
        dist.barrier()
