"""Model lineages (sequential fine-tuning): two tiny tasks on the bundled sample through the command line, the
delta and its checksums, a tampered lineage refused, adapting from the lineage's model, MDS selection and the
training loop under a 2-process gloo group."""

import json

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from conftest import free_port, liver_crop, LIVER, run_cli, SPLEEN

from medadapt.artifacts import load_adapter
from medadapt.backends.checkpoints import sha256_of
from medadapt.cli.main import main
from medadapt.config import AdapterConfig, TrainConfig
from medadapt.io.volume import write_volume
from medadapt.lineage.delta import stage_change
from medadapt.lineage.folder import DELTA, read_lineage
from medadapt.lineage.model import load_base, load_lineage_model
from medadapt.lineage.selection import most_similar, pretraining_losses
from medadapt.methods.lora import add_lora
from medadapt.methods.training import train


@pytest.fixture(scope="module")
def lineage(tmp_path_factory, sample_image_path, sample_labels_path):
    """A MedSeqFT lineage of the sample's liver, then its spleen (3 slices, 3 iterations each)."""
    folder = tmp_path_factory.mktemp("lineage") / "abdomen"
    assert main(["lineage", "create", str(folder), "--iterations", "3", "--max-slices", "3", "--retain", "2"]) == 0
    for label, name in ((LIVER, "liver"), (SPLEEN, "spleen")):
        assert main(["lineage", "add", str(folder), "--image", str(sample_image_path), "--labels",
                     str(sample_labels_path), "--label", str(label), "--name", name, "--modality", "CT",
                     "--device", "cpu", "--quiet"]) == 0
    return folder


def test_a_lineage_records_each_stage_and_its_history(lineage, capsys):
    record = json.loads((lineage / "lineage.json").read_text())
    assert [(t["stage"], t["name"], t["slices"], t["retained"]) for t in record["tasks"]] == [
        (1, "liver", 3, 2), (2, "spleen", 3, 2)]
    assert list(record["history"][0]) == ["liver"] and set(record["history"][1]) == {"liver", "spleen"}
    assert record["history"][1]["liver"] > 0.8, "the liver is still segmented from its box after the spleen stage"
    assert record["delta_sha256"] == sha256_of(lineage / DELTA)
    for task in record["tasks"]:
        assert task["retention_sha256"] == sha256_of(lineage / "retention" / f"task-{task['stage']:02d}.safetensors")
    code, out, _ = run_cli(capsys, "lineage", "show", lineage)
    assert code == 0 and "2 | spleen | CT | 1 | 3 | 2 |" in out


def test_the_lineage_model_is_the_base_plus_a_decoder_delta(lineage):
    loaded = read_lineage(lineage)
    model, base = load_lineage_model(loaded, "cpu"), load_base(loaded, "cpu")
    base_weights = dict(base.named_parameters())
    changed = {name for name, p in model.named_parameters() if not torch.equal(p, base_weights[name])}
    assert changed == set(loaded.delta()), "exactly the delta's tensors differ from the base"
    assert all(name.startswith("mask_decoder.") for name in changed), "on the CPU only the decoder adapts"
    assert model.checkpoint_sha256 != base.checkpoint_sha256


def test_a_merged_stage_computes_what_its_lora_computed():
    """The delta of a stage (LoRA merged, heads' change) added to the starting weights gives the same outputs."""
    from medadapt.backends.litemedsam import build_litemedsam
    from medadapt.lineage.delta import apply_delta, trained_values
    torch.manual_seed(0)
    start, student = build_litemedsam().eval(), build_litemedsam().eval()
    student.load_state_dict(start.state_dict())
    add_lora(student, AdapterConfig())
    before = trained_values(student)
    with torch.no_grad():
        for name, p in student.named_parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.05)
    embeddings, boxes = torch.randn(2, 256, 64, 64), torch.tensor([[40.0, 50, 120, 160], [10, 10, 200, 90]])
    with torch.no_grad():
        expected = student.decode(embeddings, boxes)[0]
        merged = apply_delta(start, stage_change(student, before), "test").decode(embeddings, boxes)[0]
    assert torch.allclose(merged, expected, atol=1e-4)


@pytest.mark.parametrize("target", [DELTA, "retention/task-01.safetensors"])
def test_a_tampered_lineage_is_refused_with_exit_code_2(lineage, tmp_path, capsys, small_case, target):
    import shutil
    copy = tmp_path / "copy"
    shutil.copytree(lineage, copy)
    data = bytearray((copy / target).read_bytes())
    data[-1] ^= 0xFF
    (copy / target).write_bytes(bytes(data))
    code, _, err = run_cli(capsys, "lineage", "show", copy)
    assert code == 2 and f"{target.split('/')[-1]}: checksum does not match lineage.json" in err
    image, labels = small_case
    code, _, err = run_cli(capsys, "adapt", image, "--exemplars", labels, "-o", tmp_path / "out.nii.gz",
                       "--base-model", copy, "--method", "zero-shot", "--quiet")
    assert code == 2 and "checksum does not match" in err
    assert not (tmp_path / "out.nii.gz").exists()


def test_adapt_starts_from_the_lineage_model_and_its_adapter_keeps_it(lineage, tmp_path, capsys, sample):
    image, liver = liver_crop(sample, slice(10, 20))
    write_volume(image, tmp_path / "crop.nii.gz")
    write_volume(liver, tmp_path / "liver.nii.gz")
    code, _, err = run_cli(capsys, "adapt", tmp_path / "crop.nii.gz", "--exemplars", tmp_path / "liver.nii.gz",
                       "--slices", "2,7", "-o", tmp_path / "out.nii.gz", "--method", "zero-shot",
                       "--base-model", lineage, "--save-model", tmp_path / "model", "--device", "cpu", "--quiet")
    assert code == 0, err
    manifest = json.loads((tmp_path / "model" / "manifest.json").read_text())
    assert manifest["base_delta"]["stage"] == 2
    backend, _, _ = load_adapter(tmp_path / "model")
    expected = load_lineage_model(read_lineage(lineage), "cpu")
    assert backend.checkpoint_sha256 == expected.checkpoint_sha256 == manifest["base_model"]["sha256"]
    weights = dict(expected.named_parameters())
    name = next(iter(read_lineage(lineage).delta()))
    assert torch.equal(dict(backend.named_parameters())[name], weights[name])


def test_bad_lineage_options_exit_2(capsys, tmp_path, lineage, sample_image_path, sample_labels_path):
    code, _, err = run_cli(capsys, "lineage", "create", lineage)
    assert code == 2 and "already exists" in err
    code, _, err = run_cli(capsys, "lineage", "add", lineage, "--image", sample_image_path, "--labels",
                       sample_labels_path, "--label", LIVER, "--name", "liver", "--quiet")
    assert code == 2 and "already has a task of that name" in err
    code, _, err = run_cli(capsys, "lineage", "add", tmp_path, "--image", sample_image_path, "--labels",
                       sample_labels_path, "--label", LIVER, "--name", "x")
    assert code == 2 and "not a MedAdapt lineage" in err
    code, _, err = run_cli(capsys, "lineage", "create", tmp_path / "new", "--retain", "0")
    assert code == 2 and "--retain: Input should be greater than or equal to 1" in err


def test_mds_prefers_slices_the_base_model_already_segments(litemedsam, sample):
    """A slice painted with its real liver scores a lower pre-training loss than one painted with a random
    blob: MDS keeps the slices most like what the model was trained on."""
    from medadapt.lineage.samples import task_slices
    from medadapt.lineage.selection import encode_all
    image, labels = sample
    real = task_slices(litemedsam, [(image, labels, "labels")], LIVER, 2)
    rng = np.random.default_rng(0)
    blob = torch.zeros_like(real.masks[:1])
    blob[0, 0, 100:140, 30:90] = torch.as_tensor(rng.random((40, 60)) > 0.5, dtype=torch.float32)
    frames = torch.cat([real.frames, real.frames[:1]])
    masks = torch.cat([real.masks, blob])
    losses = pretraining_losses(litemedsam, encode_all(litemedsam, frames), masks, TrainConfig())
    assert most_similar(losses, 2) == [0, 1]


def _train_in_group(rank: int, port: int, results) -> None:
    from medadapt.backends.litemedsam import build_litemedsam
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        torch.manual_seed(rank)  # different starting LoRA: the group must start from rank 0's
        model = add_lora(build_litemedsam().eval(), AdapterConfig())
        gen = torch.Generator().manual_seed(0)
        embeddings = torch.randn(6, 256, 64, 64, generator=gen)
        masks = torch.zeros(6, 1, 256, 256)
        masks[:, :, 60:160, 80:200] = 1
        losses = train(model, torch.zeros(6, 3, 256, 256), masks, TrainConfig(iterations=2, batch_size=2),
                       np.random.default_rng(rank), embeddings)
        trained = torch.cat([p.detach().flatten() for p in model.parameters() if p.requires_grad])
        results[rank] = (trained.numpy(), losses)
    finally:
        dist.destroy_process_group()


def test_training_under_a_two_process_gloo_group_keeps_the_processes_identical():
    results = mp.Manager().dict()
    mp.spawn(_train_in_group, args=(free_port(), results), nprocs=2, join=True)
    (first, first_losses), (second, second_losses) = results[0], results[1]
    assert np.array_equal(first, second), "averaged gradients keep both processes' weights equal"
    assert first_losses != second_losses, "each process trained on its own batches"


def test_a_cancelled_stage_leaves_the_lineage_as_it_was(lineage, sample):
    import threading

    from medadapt.errors import CancelledError
    from medadapt.lineage.stage import add_task
    before = {path.relative_to(lineage): path.read_bytes() for path in lineage.rglob("*") if path.is_file()}
    image, labels = sample
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(CancelledError):
        add_task(lineage, [(image, labels, "labels")], LIVER, "liver again", cancel=cancel)
    after = {path.relative_to(lineage): path.read_bytes() for path in lineage.rglob("*") if path.is_file()}
    assert after == before
    assert not [p for p in lineage.parent.iterdir() if p.name.startswith(".")], "no staging folder is left"
