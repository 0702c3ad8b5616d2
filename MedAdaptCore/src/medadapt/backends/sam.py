"""Official Segment Anything (ViT-B / ViT-L / ViT-H) and MedSAM checkpoints behind the backend interface.

The architecture comes from ``segment_anything.sam_model_registry`` (built without weights); the weights are
the registry's checksum-verified file (see :mod:`medadapt.backends.catalog`) or a local checkpoint, loaded with
``torch.load(weights_only=True)`` and strict key checks.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from segment_anything import sam_model_registry
from segment_anything.modeling import Sam

from medadapt.backends.base import PromptableBackend
from medadapt.backends.catalog import ModelEntry, fetch, model_entry
from medadapt.backends.checkpoints import load_into, load_state_dict, sha256_of
from medadapt.errors import InputError

ARCHITECTURES: dict[str, Callable[[], Sam]] = {key: sam_model_registry[key] for key in ("vit_b", "vit_l", "vit_h")}
"""Registry ``architecture`` -> builder of that SAM with random weights."""


class SamBackend(PromptableBackend):
    """A SAM-family model. Frames in [0, 1] are scaled to SAM's 0-255 RGB and standardised with its pixel mean
    and std (``normalisation="sam"``), or passed unchanged (``"unit"``: MedSAM feeds min-max [0, 1] images
    straight to the image encoder, see ``MedSAM_Inference.py`` in bowang-lab/MedSAM).

    Encoder LoRA uses ``peft`` on each ViT block's fused ``attn.qkv`` Linear: one low-rank update of the joint
    query/key/value projection. SAMed instead adds separate rank-r updates to q and v only; peft adapts whole
    Linear layers, and the fused update has the same parameter count (r x 4 x dim per block). The official
    mask decoder takes one image per prompt set, so batches are decoded one item at a time.
    """

    lora_targets = {"encoder": r"image_encoder\.blocks\.\d+\.attn\.qkv",
                    "decoder": PromptableBackend.lora_targets["decoder"]}
    batched_decoder = False

    def __init__(self, name: str, sam: Sam, normalisation: str, accepts_points: bool, checkpoint_sha256: str):
        super().__init__(sam.image_encoder, sam.prompt_encoder, sam.mask_decoder, checkpoint_sha256)
        if normalisation not in ("sam", "unit"):
            raise InputError(f"model {name}: normalisation must be 'sam' or 'unit', got {normalisation!r}")
        self.name = name
        self.image_size = sam.image_encoder.img_size
        self.accepts_points = accepts_points
        self.normalisation = normalisation
        self.register_buffer("pixel_mean", sam.pixel_mean.clone(), persistent=False)
        self.register_buffer("pixel_std", sam.pixel_std.clone(), persistent=False)

    def normalise_frame(self, frames: torch.Tensor) -> torch.Tensor:
        """Frames in [0, 1] -> the encoder input this checkpoint was trained on."""
        if self.normalisation == "unit":
            return frames
        return (frames * 255.0 - self.pixel_mean) / self.pixel_std

    def decode(self, embeddings: torch.Tensor, boxes: torch.Tensor | None = None,
               points: torch.Tensor | None = None, point_labels: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """As :meth:`PromptableBackend.decode`, with SAM's quarter-size mask logits upsampled bilinearly to the
        frame size (as ``Sam.postprocess_masks`` does), so they line up with frame-sized training masks."""
        logits, iou = super().decode(embeddings, boxes, points, point_labels)
        return F.interpolate(logits, size=(self.image_size, self.image_size), mode="bilinear",
                             align_corners=False), iou


def reduce_input_size(sam: Sam, size: int) -> None:
    """Make a loaded SAM take ``size`` x ``size`` inputs, as SAMed does for 512: the absolute position
    embedding is resized bilinearly, the global-attention blocks' relative position tables linearly, and the
    prompt encoder's image and embedding sizes are set to match."""
    encoder = sam.image_encoder
    patch = encoder.patch_embed.proj.kernel_size[0]
    tokens = size // patch
    pos = encoder.pos_embed.data.permute(0, 3, 1, 2)
    pos = F.interpolate(pos, size=(tokens, tokens), mode="bilinear", align_corners=False)
    encoder.pos_embed = torch.nn.Parameter(pos.permute(0, 2, 3, 1).contiguous())
    for block in encoder.blocks:
        if block.window_size == 0 and block.attn.use_rel_pos:
            for key in ("rel_pos_h", "rel_pos_w"):
                table = getattr(block.attn, key).data
                resized = F.interpolate(table.T[None], size=2 * tokens - 1, mode="linear", align_corners=False)
                setattr(block.attn, key, torch.nn.Parameter(resized[0].T.contiguous()))
    encoder.img_size = size
    sam.prompt_encoder.input_image_size = (size, size)
    sam.prompt_encoder.image_embedding_size = (tokens, tokens)
    sam.prompt_encoder.mask_input_size = (4 * tokens, 4 * tokens)


def _checked_input_size(entry: ModelEntry, input_size: int | None, patch: int) -> int:
    if input_size is None or input_size == entry.input_size:
        return entry.input_size
    if not 0 < input_size < entry.input_size or input_size % patch:
        raise InputError(f"--input-size: {entry.name} takes a multiple of {patch} below its native "
                         f"{entry.input_size}, got {input_size}")
    warnings.warn(f"{entry.name}: running at a reduced {input_size}x{input_size} input instead of "
                  f"{entry.input_size} (interpolated position embeddings, as SAMed): faster on a CPU, but "
                  "expect lower zero-shot accuracy than at full size", stacklevel=3)
    return input_size


def load_sam(name: str, device: str = "cpu", checkpoint: str | Path | None = None,
             input_size: int | None = None) -> SamBackend:
    """The registry model ``name`` (e.g. ``sam_vit_b``, ``medsam``), frozen, in eval mode, on ``device``.

    Weights come from ``checkpoint`` when given (a local ``.pth`` state dict, e.g. a manual download; its
    SHA-256 is recorded but not compared) or else from the download cache, verified against the registry's
    SHA-256. ``input_size`` below the native 1024 trades accuracy for speed (see :func:`reduce_input_size`).
    """
    entry = model_entry(name)
    if entry.architecture not in ARCHITECTURES:
        raise InputError(f"model {name}: unknown architecture {entry.architecture!r}; known: "
                         f"{', '.join(sorted(ARCHITECTURES))}")
    if checkpoint is None:
        path, expected = fetch(entry)
    else:
        path, expected = Path(checkpoint), None
    sam = ARCHITECTURES[entry.architecture]()
    state = load_state_dict(path, expected)
    load_into(sam, state, str(path))
    size = _checked_input_size(entry, input_size, sam.image_encoder.patch_embed.proj.kernel_size[0])
    if size != entry.input_size:
        reduce_input_size(sam, size)
    model = SamBackend(name, sam, entry.normalisation, entry.accepts_points, expected or sha256_of(path))
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model.eval().to(device)
