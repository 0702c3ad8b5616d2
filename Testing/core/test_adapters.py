"""LoRA via peft: only the adapter (and decoder heads) train; the pretrained weights stay untouched."""

import numpy as np
import torch
from conftest import LIVER

from medadapt.config import AdapterConfig
from medadapt.methods.lora import adapter_state, add_lora, trainable_count
from medadapt.backends import load_backend
from medadapt.io.intensity import intensity_window
from medadapt.slices.stack import slice_stack
from medadapt.slices.frame import in_plane_spacing
from medadapt.slices.model import SliceModel
from medadapt.config import TrainConfig
from medadapt.methods.training import train


def test_training_changes_only_the_adapter(sample):
    image, labels = sample
    backend = load_backend("litemedsam", "cpu")
    base = {name: p.detach().clone() for name, p in backend.named_parameters()}
    add_lora(backend, AdapterConfig(parts=("decoder",), rank=4))
    trainable = {name for name, p in backend.named_parameters() if p.requires_grad}
    assert trainable == set(adapter_state(backend))
    assert all("lora_" in n or n.startswith(backend.trainable_heads) for n in trainable)
    assert not any(n.startswith("image_encoder") for n in trainable)
    assert 0 < trainable_count(backend) < 0.1 * sum(p.numel() for p in backend.parameters())

    window = intensity_window(image.array, labels.array == LIVER)
    model = SliceModel(backend, slice_stack(image, 0, window), in_plane_spacing(image.geometry.spacing, 0))
    slices = [12, 18]
    masks = model.frame.mask_to_frame(np.stack([labels.array[s] == LIVER for s in slices]))
    embeddings = torch.cat([model.embedding(s) for s in slices])
    lora_b_before = {n: p.detach().clone() for n, p in backend.named_parameters() if "lora_B" in n}
    losses = train(backend, None, masks, TrainConfig(iterations=4, batch_size=2, warmup=1),
                   np.random.default_rng(0), embeddings)
    assert len(losses) == 4 and all(np.isfinite(losses))
    for name, p in backend.named_parameters():
        original = name.replace(".base_layer", "")
        if original in base and "lora_" not in name and not p.requires_grad:
            assert torch.equal(p, base[original]), f"{name} changed"
    assert any(not torch.equal(p, lora_b_before[n]) for n, p in backend.named_parameters() if "lora_B" in n)
    assert not backend.image_encoder.training  # frozen batch-norm statistics kept


def test_the_model_trains_briefly_only_when_it_segments_just_the_ends(sample):
    from medadapt.config import AdaptConfig
    from medadapt.io.exemplars import find_exemplars
    from medadapt.methods.lora import training_iterations
    from medadapt.options import AdaptOptions, build_config

    image, labels = sample
    two_labels = find_exemplars(image, labels, axis=0, slices=[12, 18], labels=[LIVER, 1])
    one_slice = find_exemplars(image, labels, axis=0, slices=[15], labels=[LIVER])
    default = AdaptConfig()
    assert (default.train.iterations, default.train.ends_iterations, default.train.full_iterations) == (None, 25, 100)
    assert training_iterations(default, two_labels, clicks=False) == 25  # registration fills the gaps
    assert training_iterations(AdaptConfig(between="fill"), two_labels, clicks=False) == 25
    assert training_iterations(default, two_labels, clicks=True) == 100  # the model also walks from clicks
    assert training_iterations(default, one_slice, clicks=False) == 100  # and from a single painted slice
    for between in ("model", "auto"):
        assert training_iterations(AdaptConfig(between=between), two_labels, clicks=False) == 100
    asked = build_config(AdaptOptions(iterations=40))  # --iterations 40, or the same number in Slicer
    set_in_code = AdaptConfig(train=TrainConfig(iterations=40))
    for config in (asked, set_in_code):
        assert training_iterations(config, two_labels, False) == training_iterations(config, one_slice, False) == 40
