"""FSEFT heads on frozen LiteMedSAM features: prompt-free segmentation of unseen slices, the size prior and
constrained transductive inference, identity start of the spatial adapter, prompt-free seeds for lora."""

import numpy as np
import pytest
import torch
from conftest import LIVER, liver_crop

from medadapt.config import AdaptConfig
from medadapt.io.exemplars import find_exemplars
from medadapt.slices.features import SliceFeatures
from medadapt.config import HeadConfig
from medadapt.methods.fseft import train_head
from medadapt.methods.heads import SegmentationHead, SpatialAdapter
from medadapt.evaluation.metrics import evaluate
from medadapt.pipeline import EmbeddingCache, adapt
from medadapt.slices.labels import segment
from medadapt.slices.stack import slice_stack
from medadapt.methods.fseft import seeds_from_heads
from medadapt.slices.size_prior import expected_size, robust_areas, size_penalty
from medadapt.slices.frame import in_plane_spacing
from medadapt.slices.model import SliceModel

PAINTED = [1, 4]


def _config(method: str) -> AdaptConfig:
    config = AdaptConfig(method=method, device="cpu")
    config.synthesis.per_exemplar, config.head.iterations, config.head.patience = 0, 60, 60
    config.train.iterations = 2
    return config


@pytest.fixture(scope="module")
def crop(sample):
    image, liver = liver_crop(sample, slice(10, 16))
    return image, liver, find_exemplars(image, liver, axis=0, slices=PAINTED)


@pytest.fixture(scope="module")
def cache():
    return EmbeddingCache()


@pytest.fixture(scope="module")
def adapted(crop, cache):
    image, _, exemplars = crop
    return adapt(image, exemplars, _config("spatial-adapter"), cache=cache)


def _hidden_dice(segmentation, crop):
    image, liver, _ = crop
    return evaluate(segmentation.array, liver.array, [LIVER], 0, PAINTED,
                    tuple(reversed(image.geometry.spacing)))[LIVER]["dice"]


def test_new_spatial_adapter_is_the_identity():
    x = torch.randn(2, 16, 9, 9)
    torch.testing.assert_close(SpatialAdapter(16)(x), x)
    head = SegmentationHead("spatial-adapter", 16, 4)
    torch.testing.assert_close(head(x), head.probe(x))


def test_spatial_adapter_segments_unseen_slices_without_prompts(adapted, crop):
    image, liver, _ = crop
    assert adapted.segmentation.geometry == image.geometry
    for s in PAINTED:
        np.testing.assert_array_equal(adapted.segmentation.array[s], liver.array[s])
    dice = _hidden_dice(adapted.segmentation, crop)
    assert dice > 0.8, dice
    assert adapted.heads.labels == [LIVER] and adapted.losses[-1] < adapted.losses[0]


def test_size_prior_uses_painted_slices_only():
    # a cylinder of area 100 over slices 0..29, painted at the centres of 3 equal parts
    assert expected_size([5, 15, 25], [100, 100, 100], [], 40, (1, 1, 1)) == pytest.approx(3000)
    # a painted slice without the structure, or the volume's end, ends the extent
    assert expected_size([5, 15, 25], [100] * 3, [27], 40, (1, 1, 1)) == pytest.approx(2650)
    assert expected_size([5, 15, 25], [100] * 3, [], 28, (1, 1, 1)) == pytest.approx(2750)
    # k >= 5: an outlier area is left out; fewer slices keep every area
    assert list(robust_areas([100, 104, 98, 101, 900])) == [100, 104, 98, 101]
    assert len(robust_areas([100, 900])) == 2
    # one slice: an ellipsoid whose central section is the painting (a sphere of radius 10 mm here)
    area = np.pi * 10 ** 2
    assert expected_size([15], [area], [], 40, (1, 1, 1)) == pytest.approx(4 / 3 * np.pi * 10 ** 3)
    assert float(size_penalty(torch.tensor(100.0), 100.0, 0.3)) == 0.0
    assert float(size_penalty(torch.tensor(160.0), 100.0, 0.3)) == pytest.approx(0.3)


def test_transductive_constraint_pulls_the_predicted_size_towards_the_prior(adapted, crop, cache):
    image, liver, exemplars = crop
    model = SliceModel(adapted.backend, slice_stack(image, 0, adapted.window),
                       in_plane_spacing(image.geometry.spacing, 0),
                       embeddings=cache.slices(adapted.backend, 0, adapted.window))
    features = SliceFeatures(model, "embedding")
    x = torch.cat([features(s) for s in PAINTED])
    masks = model.frame.mask_to_frame(np.stack([liver.array[s] > 0 for s in PAINTED]))
    config = HeadConfig(iterations=30, patience=30, size_weight=1.0, size_start=0.25, query_slices=6)
    sizes = {}
    for prior in (None, 0.5 * liver.array.astype(bool).sum()):
        torch.manual_seed(0)
        head = SegmentationHead("linear-probe", x.shape[1])
        train_head(head, x, masks, config, np.random.default_rng(0), features if prior else None, prior)
        with torch.no_grad():
            sizes[prior] = sum(float((torch.sigmoid(model.frame.logits_to_slice(head(features(s)))) > 0.5).sum())
                               for s in range(len(model)))
    plain, prior = sizes[None], [k for k in sizes if k][0]
    assert abs(sizes[prior] - prior) < 0.8 * abs(plain - prior), sizes


def test_transductive_method_reports_its_prior(crop, cache):
    image, liver, exemplars = crop
    config = _config("spatial-adapter-ti")
    config.head.iterations = 20
    result = adapt(image, exemplars, config, cache=cache)
    truth = liver.array.astype(bool).sum()
    assert 0.5 * truth < result.size_priors[LIVER] < 1.5 * truth
    assert _hidden_dice(result.segmentation, crop) > 0.6


def test_lora_seed_head_starts_a_prompt_free_prediction(crop, cache):
    image, liver, exemplars = crop
    config = _config("lora")
    config.head.seed_head, config.head.iterations = "linear-probe", 40
    result = adapt(image, exemplars, config, cache=cache)
    assert result.heads.kind == "linear-probe"
    model = SliceModel(result.backend, slice_stack(image, 0, result.window),
                       in_plane_spacing(image.geometry.spacing, 0),
                       embeddings=cache.slices(result.backend, 0, result.window))
    seeds = seeds_from_heads(model, result.heads, config.stop.box_margin)
    labels = segment(model, None, seeds, config, {})
    truth = liver.array == LIVER
    dice = 2 * np.count_nonzero((labels == LIVER) & truth) / (np.count_nonzero(labels == LIVER) + truth.sum())
    assert dice > 0.8, dice


def test_decoder_features_of_a_whole_slice_box(crop, cache):
    from dataclasses import replace
    image, liver, exemplars = crop
    config = _config("linear-probe")
    config.head = replace(config.head, features="decoder", iterations=20)
    result = adapt(image, exemplars, config, cache=cache)
    assert result.heads.source == "decoder" and result.heads.channels == 32
    features = SliceFeatures(adapt_model(result, image), "decoder")
    assert features(2).shape == (1, 32, 256, 256)
    assert _hidden_dice(result.segmentation, crop) > 0.5


def adapt_model(result, image):
    """A slice model over ``image`` with the adapted result's backend and window."""
    return SliceModel(result.backend, slice_stack(image, 0, result.window), in_plane_spacing(image.geometry.spacing, 0))
