"""The FSEFT 3D foundation model: MONAI ``SwinUNETR`` as a frozen backbone of dense volume features.

After Silva-Rodriguez et al. (FSEFT): SwinUNETR with feature size 48 and a 29-class sigmoid head, trained on
96^3 patches of CT resampled to 1.5 mm isotropic spacing in RAS orientation, HU clipped to [-175, 250] and
scaled to [0, 1]; inference by sliding windows (overlap 0.25, Gaussian weighting). The features are the
decoder's last map (feature-size channels at full patch resolution), the input of the 29-class output
convolution. The architecture (feature size, depths, attention heads, classes) is read from the checkpoint, so
smaller models of the same layout load through the same code.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from monai.inferers import sliding_window_inference
from monai.networks.nets import SwinUNETR
from torch import nn

from medadapt.backends.checkpoints import load_into, load_state_dict, sha256_of
from medadapt.errors import InputError
from medadapt.io.grid3d import isotropic_grid, resample
from medadapt.io.intensity import normalise
from medadapt.io.volume import Geometry, Volume

PREFIXES = ("module.", "model.", "backbone.")
"""Wrapper prefixes stripped from checkpoint keys (DataParallel, training wrappers)."""
RENAMES = (("swin_vit.", "swinViT."), ("classifier.", "out.conv.conv."))
"""Key renames of FSEFT's own SwinUNETR copy (output layer ``classifier``) to MONAI's layout."""
FSEFT_ARCHITECTURE = {"in_channels": 1, "out_channels": 29, "feature_size": 48, "depths": (2, 2, 2, 2),
                      "num_heads": (3, 6, 12, 24)}


@dataclass
class SwinSettings:
    """Preprocessing and sliding-window inference of the 3D backbone (FSEFT's values)."""

    patch_size: int = 96
    """Sliding-window patch edge in voxels (a multiple of 32)."""
    spacing: float = 1.5
    """Isotropic model grid spacing in mm."""
    window: tuple[float, float] = (-175.0, 250.0)
    """Intensity (HU) window mapped to [0, 1]."""
    overlap: float = 0.25
    windows_per_batch: int = 1


def normalise_keys(state: dict) -> dict:
    """Checkpoint keys in MONAI's SwinUNETR layout: wrapper prefixes stripped, FSEFT's names mapped."""
    renamed = {}
    for key, value in state.items():
        while key.startswith(PREFIXES):
            key = key.split(".", 1)[1]
        for old, new in RENAMES:
            if key.startswith(old):
                key = new + key[len(old):]
        renamed[key] = value
    return renamed


def architecture(state: dict) -> dict:
    """SwinUNETR constructor arguments read from a normalised state dict (FSEFT's where keys are absent)."""
    args = dict(FSEFT_ARCHITECTURE)
    if "swinViT.patch_embed.proj.weight" in state:
        args["feature_size"], args["in_channels"] = state["swinViT.patch_embed.proj.weight"].shape[:2]
    if "out.conv.conv.weight" in state:
        args["out_channels"] = state["out.conv.conv.weight"].shape[0]
    depths, heads = [], []
    for layer in range(1, 5):
        prefix = f"swinViT.layers{layer}.0.blocks."
        table = state.get(prefix + "0.attn.relative_position_bias_table")
        if table is None:
            return args
        depths.append(len({key[len(prefix):].split(".")[0] for key in state if key.startswith(prefix)}))
        heads.append(table.shape[1])
    return {**args, "depths": tuple(depths), "num_heads": tuple(heads)}


class SwinBackbone(nn.Module):
    """A frozen SwinUNETR and its preprocessing; :meth:`features` gives a volume's dense decoder features."""

    name = "swinunetr"

    def __init__(self, net: SwinUNETR, settings: SwinSettings, checkpoint_sha256: str = ""):
        super().__init__()
        self.net, self.settings, self.checkpoint_sha256 = net.eval().requires_grad_(False), settings, checkpoint_sha256

    @property
    def device(self) -> torch.device:
        """Device of the model's parameters."""
        return next(self.parameters()).device

    @property
    def output_layer(self) -> nn.Conv3d:
        """The pretrained 1 x 1 x 1 output convolution (one channel per pre-training class)."""
        return self.net.out.conv.conv

    def _decoder_features(self, patches: torch.Tensor) -> torch.Tensor:
        captured = []
        hook = self.net.out.register_forward_hook(lambda module, inputs, output: captured.append(inputs[0]))
        try:
            self.net(patches)
        finally:
            hook.remove()
        return captured[0]

    def model_input(self, image: Volume) -> tuple[torch.Tensor, Geometry]:
        """``image`` on the model grid as a (1, 1, i, j, k) tensor in [0, 1] (MONAI's index order, as in
        training) and that grid (:func:`medadapt.io.grid3d.isotropic_grid`)."""
        grid = isotropic_grid(image.geometry, self.settings.spacing)
        array = resample(image.array.astype(np.float32), image.geometry, grid, default=self.settings.window[0])
        scaled = torch.from_numpy(normalise(array, self.settings.window))
        return scaled.permute(2, 1, 0)[None, None].contiguous(), grid

    @torch.no_grad()
    def features(self, image: Volume) -> tuple[torch.Tensor, Geometry]:
        """Dense features (C, z, y, x) of the whole ``image`` on the model grid, on the model's device, by
        Gaussian-weighted sliding windows; and the model grid."""
        x, grid = self.model_input(image)
        s = self.settings
        out = sliding_window_inference(x.to(self.device), s.patch_size, s.windows_per_batch, self._decoder_features,
                                       overlap=s.overlap, mode="gaussian")
        return out[0].permute(0, 3, 2, 1).contiguous(), grid


def load_swinunetr(device: str = "cpu", checkpoint: str | Path | None = None, input_size: int | None = None
                   ) -> SwinBackbone:
    """The SwinUNETR of a local ``checkpoint`` (FSEFT's ``fseft.pth`` or any file of that layout: a state dict,
    possibly under ``state_dict`` / ``model`` / ``net``, keys possibly prefixed ``module.`` / ``model.``) on
    ``device``; ``input_size`` is the sliding-window patch edge (default 96)."""
    if checkpoint is None:
        raise InputError("--checkpoint: the swinunetr backend needs a local weights file (FSEFT's fseft.pth or a "
                         "SwinUNETR state dict); there is no download for it")
    settings = SwinSettings() if input_size is None else SwinSettings(patch_size=input_size)
    if settings.patch_size < 64 or settings.patch_size % 32:
        raise InputError(f"--input-size: swinunetr patches must be a multiple of 32 and at least 64, "
                         f"got {settings.patch_size}")
    state = normalise_keys(load_state_dict(checkpoint))
    net = SwinUNETR(**architecture(state))
    load_into(net, state, str(checkpoint))
    return SwinBackbone(net, settings, sha256_of(checkpoint)).to(device)
