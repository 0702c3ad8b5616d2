"""Safe checkpoint loading: checksum verification and ``torch.load(weights_only=True)``."""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from torch import nn

from medadapt.errors import InputError


def sha256_of(path: str | Path) -> str:
    """Hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_state_dict(path: str | Path, expected_sha256: str | None = None) -> dict:
    """Tensors of a checkpoint file (never unpickling code); ``InputError`` on a checksum or format problem."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: checkpoint file not found")
    if expected_sha256:
        actual = sha256_of(path)
        if actual != expected_sha256:
            raise InputError(f"{path}: checkpoint checksum mismatch (SHA-256 {actual[:12]}..., expected "
                             f"{expected_sha256[:12]}...); the file is corrupt or not the expected model")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for truncated or foreign files
        raise InputError(f"{path}: not a readable PyTorch checkpoint ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0][:200] if str(exc) else ''})") from exc
    for key in ("model", "state_dict", "net"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputError(f"{path}: checkpoint does not hold a state dict of tensors")
    return state


def load_into(module: nn.Module, state: dict, source: str) -> None:
    """Load ``state`` strictly, with an error naming missing and unexpected keys."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong_shape = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or wrong_shape:
        detail = "; ".join(f"{what} {len(keys)} (e.g. {keys[0]})" for what, keys in
                           (("missing keys", missing), ("unexpected keys", unexpected),
                            ("shape mismatches", wrong_shape)) if keys)
        raise InputError(f"{source}: checkpoint keys do not match the model architecture: {detail}")
    module.load_state_dict(state, strict=True)
