"""Trainable parameters and saved adapter sizes per method (a script, not a test; no data needed).

    python benchmarks/adapter_sizes.py

Builds each method's trainable parts on the real LiteMedSAM (and the FSEFT heads on FSEFT's SwinUNETR, built
with random weights), saves them as ``--save-model`` does (``medadapt.artifacts.save_adapter``; the 3D heads'
``heads.safetensors``) and prints a Markdown table. Sizes do not depend on training, so untrained parts are
saved.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from monai.networks.nets import SwinUNETR
from safetensors.torch import save_file

from medadapt.config import AdapterConfig
from medadapt.methods.lora import add_lora, trainable_count
from medadapt.artifacts import save_adapter
from medadapt.backends import load_backend
from medadapt.backends.swinunetr import FSEFT_ARCHITECTURE
from medadapt.config import AdaptConfig
from medadapt.config import HeadConfig
from medadapt.methods.heads import HeadSet


def saved_size_mb(backend, config: AdaptConfig, heads: HeadSet | None) -> float:
    """Size of the folder ``save_adapter`` writes for these parts."""
    with tempfile.TemporaryDirectory() as folder:
        saved = save_adapter(Path(folder) / "model", backend, config, {}, heads)
        return sum(f.stat().st_size for f in saved.iterdir()) / 2 ** 20


def heads_size_mb(heads: HeadSet) -> float:
    """Size of the ``heads.safetensors`` file of a head set."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "heads.safetensors"
        save_file({k: v.contiguous() for k, v in heads.state_dict().items()}, str(path))
        return path.stat().st_size / 2 ** 20


def heads_count(heads: HeadSet) -> int:
    """Parameters of a head set."""
    return sum(p.numel() for p in heads.parameters())


def main() -> None:
    """Print one row per method: trainable parameters, share of the base model, saved size."""
    total = sum(p.numel() for p in load_backend("litemedsam", "cpu").parameters())
    swin = sum(p.numel() for p in SwinUNETR(**FSEFT_ARCHITECTURE).parameters())
    width = HeadConfig().adapter_width
    rows = []
    for name, parts in (("lora, decoder (CPU default) + seed probe", ("decoder",)),
                        ("lora, encoder + decoder (GPU default) + seed probe", ("encoder", "decoder"))):
        backend = add_lora(load_backend("litemedsam", "cpu"), AdapterConfig(parts=parts))
        seed = HeadSet("linear-probe", "embedding", 256, [1])
        count = trainable_count(backend) + heads_count(seed)
        rows.append((name, count, count / total, saved_size_mb(backend, AdaptConfig(method="lora"), seed)))
    frozen = load_backend("litemedsam", "cpu").requires_grad_(False)
    channels = FSEFT_ARCHITECTURE["feature_size"]
    for method, kind, dims, adapter_width in (
            ("linear-probe (LiteMedSAM embedding)", "linear-probe", 2, 0),
            ("spatial-adapter(-ti) (LiteMedSAM embedding)", "spatial-adapter", 2, width),
            ("linear-probe (SwinUNETR 3D)", "linear-probe", 3, 0),
            ("spatial-adapter(-ti) (SwinUNETR 3D)", "spatial-adapter", 3, 0)):
        heads = HeadSet(kind, "embedding", 256 if dims == 2 else channels, [1], adapter_width, dims)
        size = saved_size_mb(frozen, AdaptConfig(method=kind), heads) if dims == 2 else heads_size_mb(heads)
        rows.append((method, heads_count(heads), heads_count(heads) / (total if dims == 2 else swin), size))
    print(f"Base models: LiteMedSAM {total:,} parameters; SwinUNETR (FSEFT) {swin:,}\n")
    print("| method (one structure) | trainable parameters | share of its base model | saved model |")
    print("|---|---|---|---|")
    for name, count, share, size in rows:
        print(f"| {name} | {count:,} | {100 * share:.3f} % | {size * 1024:.1f} KB |")


if __name__ == "__main__":
    main()
