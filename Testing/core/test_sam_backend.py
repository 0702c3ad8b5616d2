"""SAM / MedSAM backends and the model registry, with a tiny SAM of the official architecture family saved in
the official checkpoint format (a plain state dict) and served from a ``file://`` URL: no network."""

import json
from functools import partial

import numpy as np
import pytest
import torch
from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

from medadapt.config import AdapterConfig
from medadapt.methods.lora import add_lora
from medadapt.artifacts import load_adapter, save_adapter
from medadapt.backends import BACKENDS
from medadapt.backends import sam as sam_module
from medadapt.backends.checkpoints import sha256_of
from medadapt.backends.sam import load_sam
from medadapt.config import AdaptConfig
from medadapt.errors import InputError
from medadapt.backends.catalog import download, fetch, model_entry, models
from medadapt.config import TrainConfig
from medadapt.methods.training import train

SIZE = 64


def build_tiny_sam() -> Sam:
    """SAM with the official modules at toy sizes: 64 px input, 16 px patches, 32 channels."""
    return Sam(
        image_encoder=ImageEncoderViT(img_size=SIZE, patch_size=16, embed_dim=32, depth=2, num_heads=2,
                                      out_chans=32, qkv_bias=True, use_rel_pos=True, window_size=2,
                                      global_attn_indexes=(1,)),
        prompt_encoder=PromptEncoder(embed_dim=32, image_embedding_size=(SIZE // 16, SIZE // 16),
                                     input_image_size=(SIZE, SIZE), mask_in_chans=4),
        mask_decoder=MaskDecoder(transformer_dim=32, num_multimask_outputs=3, iou_head_depth=2,
                                 iou_head_hidden_dim=32,
                                 transformer=TwoWayTransformer(depth=2, embedding_dim=32, mlp_dim=64, num_heads=2)),
    )


def write_registry(path, name, url, sha256, normalisation="sam"):
    path.write_text(json.dumps({name: {"architecture": "tiny", "url": url, "filename": f"{name}.pth",
                                       "sha256": sha256, "licence": "test", "input_size": SIZE,
                                       "normalisation": normalisation, "accepts_points": True}}))


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    """A tiny SAM checkpoint registered as model ``tiny_sam`` (URL file://...) with an empty cache."""
    torch.manual_seed(0)
    source = tmp_path / "published" / "tiny_sam.pth"
    source.parent.mkdir()
    state = build_tiny_sam().state_dict()
    torch.save(state, source)
    monkeypatch.setitem(sam_module.ARCHITECTURES, "tiny", build_tiny_sam)
    monkeypatch.setitem(BACKENDS, "tiny_sam", partial(load_sam, "tiny_sam"))
    monkeypatch.setenv("MEDADAPT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("MEDADAPT_MODELS", str(tmp_path / "models.json"))
    write_registry(tmp_path / "models.json", "tiny_sam", source.as_uri(), sha256_of(source))
    return {"source": source, "state": state, "cache": tmp_path / "cache", "registry": tmp_path / "models.json"}


def test_shipped_registry_lists_the_official_checkpoints():
    entries = models()
    assert {"sam_vit_b", "sam_vit_l", "sam_vit_h", "medsam"} <= set(entries)
    for entry in entries.values():
        assert entry.architecture in sam_module.ARCHITECTURES and entry.url.startswith("https://")
        assert entry.sha256 is None or len(entry.sha256) == 64
    assert entries["sam_vit_b"].sha256.startswith("ec2df627")
    assert entries["medsam"].normalisation == "unit" and not entries["medsam"].accepts_points
    assert set(BACKENDS) >= {"litemedsam", "sam_vit_b", "sam_vit_l", "sam_vit_h", "medsam"}


def test_tiny_sam_is_downloaded_verified_cached_and_segments(tiny):
    backend = load_sam("tiny_sam")
    cached = tiny["cache"] / "tiny_sam.pth"
    assert cached.is_file() and backend.checkpoint_sha256 == sha256_of(tiny["source"])
    assert all(torch.equal(backend.state_dict()[k], v) for k, v in tiny["state"].items())
    assert backend.image_size == SIZE and not any(p.requires_grad for p in backend.parameters())
    embeddings = backend.encode(torch.rand(2, 3, SIZE, SIZE))
    assert embeddings.shape == (2, 32, 4, 4)
    logits, iou = backend.decode(embeddings, torch.tensor([[8.0, 8, 40, 40], [20, 10, 60, 50]]))
    assert logits.shape == (2, 1, SIZE, SIZE) and iou.shape == (2,)
    logits, _ = backend.decode(embeddings[:1], points=torch.tensor([[[30.0, 30], [5, 5]]]),
                               point_labels=torch.tensor([[1, 0]]))
    assert logits.shape == (1, 1, SIZE, SIZE)
    tiny["source"].unlink()  # a second load uses the verified cache
    assert load_sam("tiny_sam").checkpoint_sha256 == backend.checkpoint_sha256


def test_frames_are_normalised_as_each_checkpoint_expects(tiny, tmp_path):
    frames = torch.full((1, 3, SIZE, SIZE), 0.5)
    sam_input = load_sam("tiny_sam").normalise_frame(frames)
    assert torch.allclose(sam_input[0, :, 0, 0], (127.5 - torch.tensor([123.675, 116.28, 103.53]))
                          / torch.tensor([58.395, 57.12, 57.375]))
    write_registry(tiny["registry"], "tiny_sam", tiny["source"].as_uri(), None, normalisation="unit")
    assert torch.equal(load_sam("tiny_sam").normalise_frame(frames), frames)


def test_lora_on_encoder_and_decoder_trains_only_the_adapter(tiny):
    backend = load_sam("tiny_sam")
    add_lora(backend, AdapterConfig(parts=("encoder", "decoder"), rank=2, train_decoder_heads=False))
    lora_layers = {n.rsplit(".lora_A", 1)[0] for n, _ in backend.named_parameters() if ".lora_A." in n}
    assert {"image_encoder.blocks.0.attn.qkv", "image_encoder.blocks.1.attn.qkv"} <= lora_layers
    assert any(n.startswith("mask_decoder.transformer.") for n in lora_layers)
    before = {n: p.detach().clone() for n, p in backend.named_parameters()}
    rng = np.random.default_rng(0)
    masks = torch.zeros(3, 1, SIZE, SIZE)
    masks[:, :, 16:40, 20:48] = 1
    losses = train(backend, torch.rand(3, 3, SIZE, SIZE), masks,
                   TrainConfig(iterations=2, batch_size=2, warmup=0, learning_rate=1e-2), rng)
    assert len(losses) == 2 and all(np.isfinite(losses))
    after = dict(backend.named_parameters())
    changed = {n for n in before if not torch.equal(before[n], after[n])}
    assert changed and all("lora_" in n for n in changed)
    assert any(n.startswith("image_encoder.") and "lora_B" in n for n in changed)


def test_sam_adapter_is_saved_and_reloaded(tiny, tmp_path):
    backend = load_sam("tiny_sam")
    config = AdaptConfig(backend="tiny_sam")
    add_lora(backend, config.adapter)
    next(p for n, p in backend.named_parameters() if "lora_B" in n).data.fill_(0.25)
    save_adapter(tmp_path / "adapter", backend, config, {})
    reloaded, manifest, _ = load_adapter(tmp_path / "adapter")
    assert manifest["base_model"] == {"name": "tiny_sam", "sha256": backend.checkpoint_sha256}
    frame = torch.rand(1, 3, SIZE, SIZE)
    with torch.no_grad():
        expected = backend.decode(backend.encode(frame), torch.tensor([[8.0, 8, 40, 40]]))[0]
        assert torch.allclose(reloaded.decode(reloaded.encode(frame), torch.tensor([[8.0, 8, 40, 40]]))[0],
                              expected)


def test_wrong_keys_and_corrupt_cache_name_the_file(tiny, tmp_path):
    state = dict(tiny["state"])
    state.pop("mask_decoder.iou_token.weight")
    torch.save(state, tmp_path / "wrong_keys.pth")
    with pytest.raises(InputError, match="wrong_keys.pth: checkpoint keys do not match .*missing keys 1"):
        load_sam("tiny_sam", checkpoint=tmp_path / "wrong_keys.pth")
    load_sam("tiny_sam")
    cached = tiny["cache"] / "tiny_sam.pth"
    with cached.open("r+b") as handle:
        handle.seek(200)
        handle.write(b"\x00" * 8)
    with pytest.raises(InputError, match="tiny_sam.pth: checkpoint checksum mismatch"):
        load_sam("tiny_sam")
    with pytest.raises(InputError, match="missing.pth: checkpoint file not found"):
        load_sam("tiny_sam", checkpoint=tmp_path / "missing.pth")


def test_download_rejects_a_wrong_checksum_and_an_unreachable_url(tiny, tmp_path):
    target = tmp_path / "downloads" / "model.pth"
    with pytest.raises(InputError, match="tiny_sam.pth: downloaded file has SHA-256 .* expected 000000000000"):
        download(tiny["source"].as_uri(), target, "0" * 64)
    assert not list(target.parent.iterdir())  # neither the file nor a partial download is left
    with pytest.raises(InputError, match=r"nowhere.pth: download failed .*--checkpoint"):
        download((tmp_path / "nowhere.pth").as_uri(), target, None)
    assert not list(target.parent.iterdir())
    write_registry(tiny["registry"], "tiny_sam", (tmp_path / "nowhere.pth").as_uri(), None)
    with pytest.raises(InputError, match="download failed"):
        load_sam("tiny_sam")


def test_unpublished_checksum_is_recorded_on_first_download_and_then_enforced(tiny):
    write_registry(tiny["registry"], "tiny_sam", tiny["source"].as_uri(), None)
    path, sha = fetch(model_entry("tiny_sam"))
    assert sha == sha256_of(tiny["source"])
    assert (tiny["cache"] / "tiny_sam.pth.sha256").read_text().strip() == sha
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(InputError, match="checksum mismatch"):
        load_sam("tiny_sam")


def test_reduced_input_size(tiny):
    with pytest.warns(UserWarning, match="reduced 32x32 input"):
        backend = load_sam("tiny_sam", input_size=32)
    assert backend.image_size == 32
    embeddings = backend.encode(torch.rand(1, 3, 32, 32))
    assert embeddings.shape == (1, 32, 2, 2)
    logits, _ = backend.decode(embeddings, torch.tensor([[4.0, 4, 20, 20]]), torch.tensor([[[10.0, 10]]]),
                               torch.tensor([[1]]))
    assert logits.shape == (1, 1, 32, 32)
    with pytest.raises(InputError, match="--input-size: tiny_sam takes a multiple of 16"):
        load_sam("tiny_sam", input_size=40)


def test_download_reports_progress_and_a_cancel_leaves_nothing(tiny, tmp_path):
    import threading

    from medadapt.errors import CancelledError
    from medadapt.backends.catalog import prefetch
    big = tmp_path / "published" / "big.pth"
    big.write_bytes(tiny["source"].read_bytes() * 40 + b"\0" * (3 << 20))  # several 1 MB blocks
    write_registry(tiny["registry"], "tiny_sam", big.as_uri(), None)
    cancel, events = threading.Event(), []

    def stop_after_first(event):
        events.append(event)
        cancel.set()
    with pytest.raises(CancelledError):
        prefetch("tiny_sam", None, stop_after_first, cancel)
    assert len(events) == 1 and events[0].stage == "download tiny_sam.pth (MB)" and events[0].total >= 3
    assert not list(tiny["cache"].iterdir())  # neither the file nor a partial download is left
    events.clear()
    prefetch("tiny_sam", None, events.append)
    assert (tiny["cache"] / "tiny_sam.pth").read_bytes() == big.read_bytes()
    assert events[-1].step == events[-1].total and [e.step for e in events] == sorted(e.step for e in events)
    events.clear()
    prefetch("tiny_sam", None, events.append)  # cached: nothing to download
    prefetch("litemedsam", None, events.append)  # ships with its package
    assert events == []
