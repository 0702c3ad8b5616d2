"""The backend interface: encode an image frame, decode with prompts, choose what adapts."""

from __future__ import annotations

import torch
from torch import nn


class PromptableBackend(nn.Module):
    """A SAM-style model: ``image_encoder``, ``prompt_encoder`` and ``mask_decoder`` submodules.

    Frames are (n, 3, image_size, image_size) tensors in [0, 1]; ``normalise_frame`` turns them into the
    encoder's input. Subclasses only set the modules, sizes and LoRA target patterns.
    """

    name = "sam-like"
    image_size = 256
    lora_targets = {"encoder": r"image_encoder\..*attn\.(qkv|proj)",
                    "decoder": r"mask_decoder\.transformer\..*\.(q_proj|k_proj|v_proj|out_proj)"}
    """Adaptable part -> regular expression over module names that get LoRA."""
    trainable_heads = ("mask_decoder.output_upscaling", "mask_decoder.output_hypernetworks_mlps",
                       "mask_decoder.iou_prediction_head", "mask_decoder.mask_tokens", "mask_decoder.iou_token")
    """Parameter-name prefixes trained in full when the decoder adapts."""

    accepts_points = True
    """False for models trained with box prompts only: clicks then shape the box instead."""
    batched_decoder = False
    """True when the mask decoder accepts a batch of images with one prompt set each."""

    def __init__(self, image_encoder: nn.Module, prompt_encoder: nn.Module, mask_decoder: nn.Module,
                 checkpoint_sha256: str = ""):
        super().__init__()
        self.image_encoder = image_encoder
        self.prompt_encoder = prompt_encoder
        self.mask_decoder = mask_decoder
        self.checkpoint_sha256 = checkpoint_sha256
        self.base_delta = None
        """A lineage's delta added to the base weights (:class:`medadapt.lineage.model.BaseDelta`), if any."""
        self.encoder_sha256 = ""
        """Checksum naming the image encoder's weights when they differ from ``checkpoint_sha256``'s model
        (a lineage whose delta leaves the encoder as the base has it names the base's)."""

    @property
    def embedding_key(self) -> str:
        """What the image embeddings depend on: the encoder's weights (see ``encoder_sha256``)."""
        return self.encoder_sha256 or self.checkpoint_sha256

    @property
    def device(self) -> torch.device:
        """Device of the model's parameters."""
        return next(self.parameters()).device

    def normalise_frame(self, frames: torch.Tensor) -> torch.Tensor:
        """Frames in [0, 1] -> encoder input (identity for models trained on [0, 1] inputs)."""
        return frames

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        """Image embeddings of (n, 3, S, S) frames in [0, 1]."""
        return self.image_encoder(self.normalise_frame(frames.to(self.device)))

    def decode(self, embeddings: torch.Tensor, boxes: torch.Tensor | None = None,
               points: torch.Tensor | None = None, point_labels: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mask logits (n, 1, s, s) and predicted IoU (n,) for embeddings and prompts in frame coordinates.

        ``boxes`` (n, 4) as x0, y0, x1, y1; ``points`` (n, p, 2) as x, y with ``point_labels`` (n, p):
        1 positive, 0 negative, -1 padding.
        """
        if self.batched_decoder or embeddings.shape[0] == 1:
            return self._decode_batch(embeddings, boxes, points, point_labels)
        parts = [self._decode_batch(embeddings[i:i + 1], None if boxes is None else boxes[i:i + 1],
                                    None if points is None else points[i:i + 1],
                                    None if points is None else point_labels[i:i + 1])
                 for i in range(embeddings.shape[0])]
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])

    def _decode_batch(self, embeddings, boxes, points, point_labels):
        point_prompt = None if points is None else (points.to(self.device), point_labels.to(self.device))
        sparse, dense = self.prompt_encoder(points=point_prompt, boxes=None if boxes is None else
                                            boxes.to(self.device), masks=None)
        low_res, iou = self.mask_decoder(image_embeddings=embeddings, image_pe=self.prompt_encoder.get_dense_pe(),
                                         sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
                                         multimask_output=False)
        return low_res, iou[:, 0]

