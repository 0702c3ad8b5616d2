"""LoRA adapters (``peft``) on a backend's attention projections, and selecting what trains."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch
from peft import LoraConfig, inject_adapter_in_model

from medadapt.backends.base import PromptableBackend
from medadapt.config import AdaptConfig, AdapterConfig, SynthesisConfig
from medadapt.io.exemplars import Exemplars
from medadapt.methods.fseft import fit_heads
from medadapt.methods.propagated import propagated_result
from medadapt.methods.result import AdaptResult, AdaptRun
from medadapt.methods.synthesis import synthesize
from medadapt.methods.training import train
from medadapt.progress import CancelFlag, Progress, ProgressCallback, check_cancel, report
from medadapt.slices.features import SliceFeatures
from medadapt.slices.model import SliceModel

ADAPTER_NAME = "medadapt"


def add_lora(backend: PromptableBackend, config: AdapterConfig) -> PromptableBackend:
    """Inject LoRA layers in place and leave only the adapter (and decoder heads) trainable."""
    unknown = [p for p in config.parts if p not in backend.lora_targets]
    if unknown:
        raise ValueError(f"adapter parts {unknown} unknown; choose from {sorted(backend.lora_targets)}")
    pattern = "|".join(f"({backend.lora_targets[p]})" for p in config.parts)
    lora = LoraConfig(r=config.rank, lora_alpha=config.alpha, lora_dropout=0.0, target_modules=pattern,
                      bias="none")
    inject_adapter_in_model(lora, backend, adapter_name=ADAPTER_NAME)
    for name, parameter in backend.named_parameters():
        parameter.requires_grad_("lora_" in name or (config.train_decoder_heads and
                                                     name.startswith(backend.trainable_heads)))
    return backend


def adapter_state(backend: PromptableBackend) -> dict[str, torch.Tensor]:
    """The trainable tensors (LoRA matrices and decoder heads), detached on the CPU."""
    return {name: p.detach().cpu().contiguous() for name, p in backend.named_parameters() if p.requires_grad}


def trainable_count(backend: PromptableBackend) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in backend.parameters() if p.requires_grad)


def _background_slices(stack: np.ndarray, exemplars: Exemplars, count: int = 6) -> list[np.ndarray]:
    """Slices farthest from every painted slice (least likely to hold the structure) for pasting."""
    distance = np.array([min(abs(s - e) for e in exemplars.slices) for s in range(len(stack))])
    far = np.argsort(-distance, kind="stable")[:count]
    return [stack[s] for s in far if distance[s] > 0]


def training_set(model: SliceModel, exemplars: Exemplars, config: AdaptConfig, rng: np.random.Generator,
                 progress: ProgressCallback | None, cancel: CancelFlag | None, encode: bool):
    """Frames, masks and (when ``encode``) frozen embeddings of every exemplar slice and its synthetic pairs."""
    backgrounds = _background_slices(model.stack, exemplars)
    images, masks, real = [], [], []
    for label in exemplars.labels:
        for s in exemplars.label_slices[label]:
            mask = np.moveaxis(exemplars.labelmap.array, exemplars.axis, 0)[s] == label
            images.append(model.stack[s]); masks.append(mask); real.append(s)
            for image, synthetic in synthesize(model.stack[s], mask, config.synthesis, rng, backgrounds):
                images.append(image); masks.append(synthetic); real.append(None)
    frame_masks = model.frame.mask_to_frame(np.asarray(masks))
    keep = [i for i in range(len(masks)) if frame_masks[i].any()]
    frames = model.frame.image_to_frame(np.asarray(images)[keep])
    frame_masks, real = frame_masks[keep], [real[i] for i in keep]
    if not encode:
        return frames, frame_masks, None
    embeddings = []
    with torch.no_grad():
        for n, (frame, s) in enumerate(zip(frames, real)):
            check_cancel(cancel)
            embeddings.append(model.embedding(s) if s is not None else model.backend.encode(frame[None]))
            report(progress, Progress("encode exemplars", n + 1, len(frames)))
    return frames, frame_masks, torch.cat(embeddings)


def training_iterations(config: AdaptConfig, exemplars: Exemplars, clicks: bool) -> int:
    """``config.train.iterations`` when set; else ``ends_iterations`` when the model segments only the ends
    beyond the outermost painted slices (every label painted on >= 2 slices, no clicks, registration or Fill in
    every gap between painted slices) and ``full_iterations`` otherwise: the adapted model is trained as long as
    its part of the volume needs (docs/benchmarks/few-shot.md,
    "How much training the default needs")."""
    train = config.train
    if train.iterations is not None:
        return train.iterations
    ends_only = (config.between in ("warp", "fill") and not clicks
                 and all(len(exemplars.label_slices[label]) >= 2 for label in exemplars.labels))
    return train.ends_iterations if ends_only else train.full_iterations


def adapt_lora(run: AdaptRun) -> AdaptResult:
    """``lora``: LoRA adapters trained on the painted slices and their synthetic variations (and a seed head
    when ``config.head.seed_head`` asks for one), then propagation with the adapted model."""
    add_lora(run.backend, run.config.adapter)
    frames, masks, embeddings = training_set(run.model, run.exemplars, run.config, run.rng, run.progress, run.cancel,
                                             run.encoder_frozen)
    schedule = replace(run.config.train, iterations=training_iterations(run.config, run.exemplars, bool(run.points)))
    losses = train(run.backend, frames, masks, schedule, run.rng, embeddings, run.progress, run.cancel)
    if not run.encoder_frozen:
        run.model.forget_embeddings()
    heads = None
    if run.config.head.seed_head:
        heads, _, _ = fit_heads(SliceFeatures(run.model, run.config.head.features), run.exemplars,
                                run.config.head.seed_head, run.config.head, SynthesisConfig(per_exemplar=0), run.rng,
                                progress=run.progress, cancel=run.cancel)
    return propagated_result(run, losses, heads)
