"""The 3D backbone (SwinUNETR as in FSEFT) and FSEFT heads on it, with a tiny SwinUNETR of the same layout:
checkpoint layouts and errors, features, geometry of the model grid and back, heads learning from two
painted slices, identity start of the spatial adapter, start from a pretrained class, the size constraint,
and saving / reloading the heads for prompt-free prediction."""

import numpy as np
import pytest
import torch
from conftest import oblique_image
from monai.networks.nets import SwinUNETR

from medadapt.artifacts import load_adapter, load_heads, save_adapter
from medadapt.backends import load_backend
from medadapt.config import AdaptConfig
from medadapt.errors import InputError
from medadapt.io.exemplars import find_exemplars
from medadapt.config import HeadConfig
from medadapt.methods.fseft3d import (PRIOR_LOGIT, adapt_3d, painted_slices, predict_3d, predicted_size,
    start_from_class, train_head3d)
from medadapt.io.grid3d import RAS, isotropic_grid, resample
from medadapt.methods.heads import SegmentationHead
from medadapt.io.volume import Volume

PATCH = 64
PAINTED = [8, 12]


def _config(method: str, checkpoint) -> AdaptConfig:
    config = AdaptConfig(method=method, backend="swinunetr", checkpoint=str(checkpoint), input_size=PATCH,
                         device="cpu")
    config.head.iterations, config.head.patience, config.head.warmup = 40, 40, 5
    return config


@pytest.fixture(scope="module")
def tiny_net():
    """A tiny SwinUNETR standing in for a trained one: random weights, except that its first and last blocks
    pass the input intensity through (residual paths only), so its dense features are informative as a trained
    backbone's are (a fully random one's are barely linearly separable: best linear Dice 0.56 on the blob)."""
    torch.manual_seed(0)
    net = SwinUNETR(in_channels=1, out_channels=29, feature_size=12, depths=(1, 1, 1, 1), num_heads=(1, 1, 1, 1))
    with torch.no_grad():
        net.encoder1.layer.conv2.conv.weight.zero_()
        net.decoder1.conv_block.conv2.conv.weight.zero_()
        net.decoder1.conv_block.conv3.conv.weight[:, :12].zero_()  # the upsampled coarse path
    return net


@pytest.fixture(scope="module")
def checkpoint(tiny_net, tmp_path_factory):
    """The tiny model saved as FSEFT's training code saves its model: under ``net``, DataParallel prefix,
    output layer called ``classifier``."""
    path = tmp_path_factory.mktemp("swin") / "fseft_tiny.pth"
    state = {"module." + k.replace("out.conv.conv.", "classifier."): v for k, v in tiny_net.state_dict().items()}
    torch.save({"net": state, "epoch": 3}, path)
    return path


@pytest.fixture(scope="module")
def backbone(checkpoint):
    return load_backend("swinunetr", "cpu", checkpoint, PATCH)


@pytest.fixture(scope="module")
def blob():
    """CT-like volume on an oblique, anisotropic grid with a bright ellipsoid, and its label map."""
    z, y, x = np.mgrid[:20, :36, :44]
    inside = ((z - 10) * 2.5 / 14) ** 2 + ((y - 18) * 1.1 / 11) ** 2 + ((x - 22) * 0.8 / 12) ** 2 < 1
    rng = np.random.default_rng(0)
    image = Volume.from_sitk(oblique_image((rng.normal(0, 15, z.shape) + 180 * inside).astype(np.float32)))
    return image, image.with_array(inside.astype(np.int16) * 3)


@pytest.fixture(scope="module")
def features(backbone, blob):
    return backbone.features(blob[0])


def _dice(a, b):
    return 2 * np.count_nonzero(a & b) / max(np.count_nonzero(a) + np.count_nonzero(b), 1)


def _hidden_dice(segmentation, labels):
    hidden = [s for s in range(labels.array.shape[0]) if s not in PAINTED]
    return _dice(segmentation.array[hidden] == 3, labels.array[hidden] == 3)


def test_checkpoint_layouts_load_the_same_weights(tiny_net, checkpoint, backbone, tmp_path):
    expected = tiny_net.state_dict()
    plain, prefixed = tmp_path / "plain.pt", tmp_path / "prefixed.pt"
    torch.save(expected, plain)
    torch.save({"state_dict": {"model." + k: v for k, v in expected.items()}}, prefixed)
    for model in (backbone, load_backend("swinunetr", "cpu", plain, PATCH),
                  load_backend("swinunetr", "cpu", prefixed, PATCH)):
        state = model.net.state_dict()
        assert set(state) == set(expected) and all(torch.equal(state[k], expected[k]) for k in expected)
    assert backbone.output_layer.out_channels == 29 and backbone.net.out.conv.conv.in_channels == 12
    assert backbone.settings.patch_size == PATCH and backbone.settings.window == (-175.0, 250.0)
    assert not any(p.requires_grad for p in backbone.parameters())


def test_wrong_or_corrupt_checkpoint_is_an_input_error(tiny_net, checkpoint, tmp_path):
    state = dict(tiny_net.state_dict())
    state.pop("decoder1.conv_block.conv1.conv.weight")
    state["decoder9.weight"] = torch.zeros(1)
    wrong, corrupt = tmp_path / "wrong.pt", tmp_path / "corrupt.pt"
    torch.save(state, wrong)
    corrupt.write_bytes(checkpoint.read_bytes()[:5000])
    with pytest.raises(InputError, match=r"wrong\.pt.*missing keys 1 \(e\.g\. decoder1.*unexpected keys 1"):
        load_backend("swinunetr", "cpu", wrong, PATCH)
    with pytest.raises(InputError, match=r"corrupt\.pt: not a readable PyTorch checkpoint"):
        load_backend("swinunetr", "cpu", corrupt, PATCH)
    with pytest.raises(InputError, match="--checkpoint"):
        load_backend("swinunetr", "cpu", None)
    with pytest.raises(InputError, match="--input-size"):
        load_backend("swinunetr", "cpu", checkpoint, 80)


def test_features_cover_the_image_on_an_isotropic_ras_grid(features, blob):
    values, grid = features
    image = blob[0]
    assert grid.spacing == (1.5, 1.5, 1.5) and grid.direction == RAS
    assert values.shape == (12, *reversed(grid.size)) and torch.isfinite(values).all()
    extent = np.asarray(image.geometry.size) * np.asarray(image.geometry.spacing)
    assert np.prod(grid.size) * 1.5 ** 3 >= np.prod(extent)


def test_geometry_survives_the_model_grid_and_back(blob):
    image, labels = blob
    grid = isotropic_grid(image.geometry, 1.5)
    there = resample(labels.array.astype(np.float32), image.geometry, grid)
    back = resample(there, grid, image.geometry) > 1.5
    assert back.shape == labels.array.shape
    assert _dice(back, labels.array == 3) > 0.9
    # the blob's centre of mass stays at the same physical point
    centre = np.argwhere(labels.array == 3).mean(axis=0)[::-1]
    on_grid = np.argwhere(there > 1.5).mean(axis=0)[::-1]
    np.testing.assert_allclose(grid.index_to_world(on_grid), image.geometry.index_to_world(centre), atol=1.0)


def test_linear_probe_learns_the_blob_from_two_painted_slices(backbone, blob, checkpoint):
    image, labels = blob
    exemplars = find_exemplars(image, labels, axis=0, slices=PAINTED)
    result = adapt_3d(image, exemplars, _config("linear-probe", checkpoint), backbone=backbone)
    assert result.segmentation.geometry == image.geometry
    for s in PAINTED:
        np.testing.assert_array_equal(result.segmentation.array[s], labels.array[s])
    dice = _hidden_dice(result.segmentation, labels)
    assert dice > 0.6, dice
    assert result.heads.dims == 3 and result.losses[-1] < result.losses[0]


def test_spatial_adapter_starts_as_the_probe_and_learns(backbone, blob, checkpoint, tmp_path):
    x = torch.randn(1, 12, 5, 6, 7)
    head = SegmentationHead("spatial-adapter", 12, dims=3)
    torch.testing.assert_close(head(x), head.probe(x))
    image, labels = blob
    exemplars = find_exemplars(image, labels, axis=0, slices=PAINTED)
    config = _config("spatial-adapter", checkpoint)
    config.head.iterations = 25
    result = adapt_3d(image, exemplars, config, backbone=backbone)
    assert _hidden_dice(result.segmentation, labels) > 0.6
    # saved and reloaded through the artifacts, the heads segment the volume again without any prompt
    save_adapter(tmp_path / "model", result.backend, config, {"exemplars": {"axis": 0}}, result.heads)
    reloaded, manifest, loaded_config = load_adapter(tmp_path / "model")
    heads = load_heads(tmp_path / "model", manifest)
    assert loaded_config.backend == "swinunetr" and heads.dims == 3 and heads.kind == "spatial-adapter"
    again = predict_3d(image, reloaded, heads, loaded_config, manifest["exemplars"]["axis"])
    hidden = [s for s in range(labels.array.shape[0]) if s not in PAINTED]
    np.testing.assert_array_equal(again.array[hidden], result.segmentation.array[hidden])


def test_probe_can_start_from_a_pretrained_class(backbone):
    head = SegmentationHead("linear-probe", 12, dims=3)
    start_from_class(head, backbone.output_layer, 4)
    torch.testing.assert_close(head.probe.weight, backbone.output_layer.weight[4:5])
    with pytest.raises(InputError, match="--pretrained-class"):
        start_from_class(head, backbone.output_layer, 29)


def test_size_constraint_pulls_the_predicted_volume_towards_the_prior(blob, features):
    image, labels = blob
    values, grid = features
    exemplars = find_exemplars(image, labels, axis=0, slices=PAINTED)
    painted = painted_slices(exemplars, 3, image.geometry, grid)
    assert sum(int(p.targets.sum()) for p in painted) == int((labels.array[PAINTED] == 3).sum())
    scale = float(np.prod(grid.spacing) / np.prod(image.geometry.spacing))
    truth = float((labels.array == 3).sum())
    config = HeadConfig(iterations=30, patience=30, warmup=5, size_weight=1.0, size_start=0.25, query_slices=8)
    sizes, losses = {}, {}
    for prior in (None, 0.4 * truth):
        torch.manual_seed(0)
        head = SegmentationHead("linear-probe", 12, dims=3)
        torch.nn.init.constant_(head.probe.bias, PRIOR_LOGIT)
        losses[prior] = train_head3d(head, values, painted, config, np.random.default_rng(0), prior, scale)
        with torch.no_grad():
            sizes[prior] = float(predicted_size(head, values, values.shape[1], np.random.default_rng(0), scale))
    prior = 0.4 * truth
    assert losses[None][:7] == losses[prior][:7] and losses[None][7:] != losses[prior][7:]
    assert abs(sizes[prior] - prior) < abs(sizes[None] - prior), sizes


def test_command_line_adapts_and_predicts_without_prompts(blob, checkpoint, tmp_path):
    from medadapt.cli.main import main
    from medadapt.io.volume import read_volume, write_volume
    image, labels = blob
    write_volume(image, tmp_path / "ct.nii.gz")
    write_volume(image.with_array(np.where(np.isin(np.arange(20), PAINTED)[:, None, None], labels.array, 0)
                                  .astype(np.int16)), tmp_path / "painted.nii.gz")
    assert main(["adapt", str(tmp_path / "ct.nii.gz"), "--exemplars", str(tmp_path / "painted.nii.gz"), "-o",
                 str(tmp_path / "seg.nii.gz"), "--base-model", "swinunetr", "--checkpoint", str(checkpoint),
                 "--input-size", str(PATCH), "--method", "linear-probe", "--iterations", "40", "--device", "cpu",
                 "--save-model", str(tmp_path / "model"), "--quiet"]) == 0
    assert main(["predict", str(tmp_path / "ct.nii.gz"), "--model", str(tmp_path / "model"), "-o",
                 str(tmp_path / "new.nii.gz"), "--device", "cpu", "--quiet"]) == 0
    predicted = read_volume(tmp_path / "new.nii.gz", label=True)
    assert predicted.geometry.matches(image.geometry)
    assert _dice(predicted.array == 3, labels.array == 3) > 0.6


@pytest.mark.parametrize("option, message", [
    (["--pretrained-class", "99", "--input-size", str(PATCH), "--device", "cpu"], "--pretrained-class: expected 0.."),
    (["--synthetic", "4"], "--synthetic: the 3D swinunetr heads learn from the painted slices"),
], ids=["pretrained-class-outside-the-head", "synthetic-pairs"])
def test_command_line_bad_3d_options_are_bad_input(blob, checkpoint, tmp_path, capsys, option, message):
    from medadapt.cli.main import main
    from medadapt.io.volume import write_volume
    image, labels = blob
    write_volume(image, tmp_path / "ct.nii.gz")
    write_volume(labels, tmp_path / "painted.nii.gz")
    assert main(["adapt", str(tmp_path / "ct.nii.gz"), "--exemplars", str(tmp_path / "painted.nii.gz"), "--slices",
                 ",".join(map(str, PAINTED)), "-o", str(tmp_path / "seg.nii.gz"), "--base-model", "swinunetr",
                 "--checkpoint", str(checkpoint), "--method", "linear-probe", *option, "--quiet"]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "seg.nii.gz").exists()
