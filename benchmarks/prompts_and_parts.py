"""Two measurements behind LiteMedSAM defaults (a script, not a test), on the bundled sample CT's liver:

1. prompt types: Dice on single slices from the exemplar's box, from one click at the mask's most interior
   point, and from both (raw model prompts, no box-from-click conversion);
2. LoRA placement: seconds per training step (batch 4) with LoRA in the mask decoder only (image embeddings
   cached) versus in the image encoder and the decoder (encoder run every step).

    python benchmarks/prompts_and_parts.py [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

SAMPLE = Path(__file__).resolve().parents[1] / "Resources" / "Sample"
SLICES = (8, 12, 15, 18, 22)


def prompt_types(device: str) -> None:
    """Print mean Dice per prompt type over a few liver slices."""
    from medadapt.backends import load_backend
    from medadapt.io.intensity import intensity_window
    from medadapt.evaluation.metrics import mask_dice as dice
    from medadapt.slices.stack import slice_stack
    from medadapt.slices.frame import in_plane_spacing
    from medadapt.slices.model import SliceModel
    from medadapt.io.volume import read_volume

    image = read_volume(SAMPLE / "ct_abdomen_image.nii.gz")
    liver = read_volume(SAMPLE / "ct_abdomen_liver_spleen.nii.gz", label=True).array == 5
    backend = load_backend("litemedsam", device)
    backend.accepts_points = True  # measure what the network does with raw clicks
    model = SliceModel(backend, slice_stack(image, 0, intensity_window(image.array, liver)),
                       in_plane_spacing(image.geometry.spacing, 0))
    scores = {"box": [], "click": [], "box + click": []}
    for index in SLICES:
        truth = liver[index]
        inside = np.unravel_index(np.argmax(ndimage.distance_transform_edt(truth)), truth.shape)
        click, positive = np.array([inside]), np.array([1])
        box = model.frame.box_from_mask(truth, 2.0)
        scores["box"].append(dice(model.predict(index, box)[0] > 0.5, truth))
        scores["click"].append(dice(model.predict(index, None, click, positive)[0] > 0.5, truth))
        scores["box + click"].append(dice(model.predict(index, box, click, positive)[0] > 0.5, truth))
    for name, values in scores.items():
        print(f"prompt {name:12s}: mean Dice {np.mean(values):.3f} over slices {SLICES}")


def lora_step_seconds(device: str, parts: tuple[str, ...], steps: int = 3) -> float:
    """Median seconds of one training step (batch 4) with LoRA in ``parts``."""
    from monai.losses import DiceCELoss

    from medadapt.config import AdapterConfig
    from medadapt.methods.lora import add_lora
    from medadapt.backends import load_backend
    backend = add_lora(load_backend("litemedsam", device), AdapterConfig(parts=parts))
    frames = torch.rand(4, 3, 256, 256, device=device)
    target = (torch.rand(4, 1, 256, 256, device=device) > 0.5).float()
    boxes = torch.tensor([[40.0, 40.0, 200.0, 200.0]] * 4)
    with torch.no_grad():
        cached = backend.encode(frames)
    optimiser = torch.optim.AdamW([p for p in backend.parameters() if p.requires_grad], 1e-4)
    loss_fn, times = DiceCELoss(sigmoid=True), []
    for _ in range(steps + 1):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        started = time.perf_counter()
        embeddings = backend.encode(frames) if "encoder" in parts else cached
        loss = loss_fn(backend.decode(embeddings, boxes)[0], target)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    return float(np.median(times[1:]))


def main() -> None:
    """Run both measurements."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    prompt_types(args.device)
    for parts in (("decoder",), ("encoder", "decoder")):
        print(f"LoRA in {'+'.join(parts):16s}: {lora_step_seconds(args.device, parts):.2f} s per step (batch 4, "
              f"{args.device})")


if __name__ == "__main__":
    main()
