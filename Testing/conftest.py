"""Shared fixtures and assertions for every area folder (``core/``, ``slicer_module/``, ``server/``, ``web/``): the bundled
sample CT, the real LiteMedSAM, oblique synthetic volumes and the geometry / Dice checks."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))  # the shared helpers beside this file, for every area folder
SAMPLE = REPO / "Resources" / "Sample"
LIVER, SPLEEN = 5, 1

if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):  # pytest -n N: share the cores instead of oversubscribing them
    import torch
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])))

def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now (for a test's process group)."""
    import socket
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# A rotated, anisotropic grid: geometry must survive every step.
OBLIQUE_DIRECTION = tuple(sitk.VersorTransform((0.2, 0.5, 0.8), 0.4).GetMatrix())
ANISOTROPIC_SPACING = (0.8, 1.1, 2.5)


@pytest.fixture(scope="session")
def sample_image_path() -> Path:
    return SAMPLE / "ct_abdomen_image.nii.gz"


@pytest.fixture(scope="session")
def sample_labels_path() -> Path:
    return SAMPLE / "ct_abdomen_liver_spleen.nii.gz"


@pytest.fixture(scope="session")
def sample(sample_image_path, sample_labels_path):
    """(image Volume, label Volume) of the bundled TotalSegmentator example CT."""
    from medadapt.io.volume import read_volume
    return read_volume(sample_image_path), read_volume(sample_labels_path, label=True)


@pytest.fixture(scope="session")
def litemedsam():
    """The real pretrained LiteMedSAM (loaded once per session; tests must not adapt it in place)."""
    from medadapt.backends import load_backend
    return load_backend("litemedsam", "cpu")


def oblique_image(array: np.ndarray, spacing=ANISOTROPIC_SPACING, direction=OBLIQUE_DIRECTION,
                  origin=(-12.5, 40.25, 7.0)) -> sitk.Image:
    """SimpleITK image of ``array`` (z, y, x) on a rotated, anisotropic grid."""
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    image.SetDirection(direction)
    image.SetOrigin(origin)
    return image


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    """``medadapt ARGV`` in this process: (exit code, standard output, standard error)."""
    from medadapt.cli.main import main
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def oblique_crop_files(folder: Path, slices: slice) -> dict[str, Path]:
    """The sample's slices ``slices`` (z range) written on a rotated, anisotropic grid: image and label map
    files by name ("image", "labels")."""
    paths = {}
    for name, source in (("image", SAMPLE / "ct_abdomen_image.nii.gz"),
                         ("labels", SAMPLE / "ct_abdomen_liver_spleen.nii.gz")):
        volume = sitk.ReadImage(str(source))[:, :, slices.start:slices.stop]
        volume.SetDirection(OBLIQUE_DIRECTION)
        volume.SetSpacing(ANISOTROPIC_SPACING)
        paths[name] = folder / f"{name}.nii.gz"
        sitk.WriteImage(volume, str(paths[name]))
    return paths


def organs_entry_folder(crop: dict[str, Path], folder: Path, modality: str) -> Path:
    """A collection folder under ``folder`` with one JSON entry: ``crop``'s image labelled for a new task
    "organs" (value 3: liver and spleen together)."""
    labels = sitk.ReadImage(str(crop["labels"]))
    organs = sitk.Cast((labels == LIVER) | (labels == SPLEEN), sitk.sitkUInt8) * 3
    organs.CopyInformation(labels)
    sitk.WriteImage(organs, str(folder / "organs.nii.gz"))
    entries = folder / "new"
    entries.mkdir()
    (entries / "organs.json").write_text(json.dumps({"image": str(crop["image"]), "labels": "../organs.nii.gz",
                                                      "tasks": {"organs": 3}, "modality": modality}))
    return entries


def predict_liver_and_spleen(capsys, model_folder: Path, crop: dict[str, Path], output: Path,
                             liver_dice: float) -> np.ndarray:
    """``medadapt predict`` of ``crop``'s image with the universal model ``model_folder``, tasks liver and spleen,
    into ``output``: checks it succeeds on the image's grid, writes only those two labels and finds the liver with
    Dice above ``liver_dice``; returns the predicted label array."""
    from assertions import assert_same_grid
    from medadapt.evaluation.metrics import mask_dice
    code, _, err = run_cli(capsys, "predict", crop["image"], "--model", model_folder, "--tasks", "liver,spleen",
                           "-o", output, "--device", "cpu", "--quiet")
    assert code == 0, err
    image, predicted = sitk.ReadImage(str(crop["image"])), sitk.ReadImage(str(output))
    assert_same_grid(predicted, image)
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(crop["labels"])))
    array = sitk.GetArrayFromImage(predicted)
    assert set(np.unique(array)) <= {0, LIVER, SPLEEN}
    assert mask_dice(array == LIVER, labels == LIVER) > liver_dice
    return array


def liver_crop(sample, slices: slice = slice(8, 22)):
    """A small real crop (z range) of the sample around the liver: (image Volume, liver-only label Volume)."""
    from medadapt.io.volume import Volume
    image, labels = sample
    crop_image = Volume.from_sitk(image.to_sitk()[:, :, slices.start:slices.stop])
    crop_labels = Volume.from_sitk(labels.to_sitk()[:, :, slices.start:slices.stop])
    liver = (crop_labels.array == LIVER).astype(np.int16) * LIVER
    return crop_image, crop_labels.with_array(liver)


@pytest.fixture()
def small_case(tmp_path):
    """A synthetic oblique, anisotropic CT-like volume (``ct.nrrd``) with label 2 painted on slices 3 and 8
    (``painted.nii.gz``), in ``tmp_path``: (image path, labels path)."""
    rng = np.random.default_rng(0)
    image = rng.normal(40, 10, (12, 40, 48)).astype(np.int16)
    image[:, :5] = -1000
    labels = np.zeros(image.shape, np.uint8)
    labels[3, 10:30, 12:36] = 2
    labels[8, 12:28, 14:34] = 2
    sitk.WriteImage(oblique_image(image), str(tmp_path / "ct.nrrd"))
    sitk.WriteImage(oblique_image(labels), str(tmp_path / "painted.nii.gz"))
    return tmp_path / "ct.nrrd", tmp_path / "painted.nii.gz"
