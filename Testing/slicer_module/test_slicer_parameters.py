"""Tests of MedAdaptSlicerLib.parameters."""

import pytest

import slicer_fixtures  # noqa: F401  (puts MedAdaptSlicer on sys.path)
from MedAdaptSlicerLib.parameters import Parameters
from medadapt.errors import InputError


def test_parameters_map_onto_core_config():
    config = Parameters(method="zero-shot", device="cpu", iterations=7, rank=2, synthesis_per_exemplar=3,
                        seed=5, between="fill").to_config()
    assert (config.method, config.device, config.seed, config.between) == ("zero-shot", "cpu", 5, "fill")
    assert (config.train.iterations, config.adapter.rank, config.synthesis.per_exemplar) == (7, 2, 3)


def test_iterations_reach_the_trained_part_and_zero_keeps_the_default():
    default = Parameters().to_config()
    heads = Parameters(method="spatial-adapter", iterations=30).to_config()
    assert (heads.head.iterations, heads.train.iterations) == (30, default.train.iterations)
    assert Parameters(method="spatial-adapter").to_config().head.iterations == default.head.iterations != 30
    assert Parameters(method="lora", iterations=0).to_config().train.iterations == default.train.iterations


@pytest.mark.parametrize("field, value, message", [("method", "magic", "method"), ("device", "tpu", "device"),
                                                   ("iterations", -1, "iterations"), ("rank", 0, "rank"),
                                                   ("between", "both", "between painted slices")])
def test_bad_values_name_the_field(field, value, message):
    with pytest.raises(InputError, match=message):
        Parameters(**{field: value}).to_config()


@pytest.mark.parametrize("cli, gui", [
    ([], {}),
    (["--method", "zero-shot", "--seed", "3"], dict(method="zero-shot", seed=3)),
    (["--iterations", "40", "--rank", "8", "--synthetic", "2", "--between", "model"],
     dict(iterations=40, rank=8, synthesis_per_exemplar=2, between="model")),
    (["--base-model", "sam_vit_b", "--input-size", "512", "--lora-parts", "encoder,decoder"],
     dict(base_model="sam_vit_b", input_size=512, lora_parts="encoder,decoder")),
    (["--method", "spatial-adapter-ti", "--iterations", "30"], dict(method="spatial-adapter-ti", iterations=30)),
    (["--device", "cpu", "--method", "fill"], dict(device="cpu", method="fill")),
])
def test_the_gui_and_the_command_line_build_the_same_config(cli, gui):
    from medadapt.cli.main import build_parser
    from medadapt.cli.commands import adapt_config
    args = build_parser().parse_args(["adapt", "image.nii.gz", "--exemplars", "painted.nii.gz", "-o", "out.nii.gz",
                                      *cli])
    assert Parameters(**gui).to_config() == adapt_config(args)


def test_parameters_round_trip_through_command_line_options():
    from medadapt.options import AdaptOptions
    options = AdaptOptions(method="linear-probe", device="cpu", base_model="medsam", input_size=512, seed=2,
                           iterations=9, rank=3, synthetic=1, between="fill", lora_parts="decoder")
    assert Parameters.from_options(options).to_options() == options


def test_swinunetr_needs_a_checkpoint_file():
    with pytest.raises(InputError, match="checkpoint"):
        Parameters(base_model="swinunetr", method="linear-probe").to_config()


def test_server_options_are_the_same_choices_without_device_or_local_files():
    parameters = Parameters(method="lora", device="cuda", iterations=7, rank=2, synthesis_per_exemplar=3, seed=5,
                            between="fill", lora_parts="decoder", input_size=512)
    options = parameters.to_server_options()
    assert options == {"method": "lora", "base_model": "litemedsam", "input_size": 512, "seed": 5, "iterations": 7,
                       "rank": 2, "synthetic": 3, "between": "fill", "lora_parts": "decoder"}
    local = parameters.to_options()  # the same values as the command line's options, but device and checkpoint
    assert all(getattr(local, name) == value for name, value in options.items())
    assert "iterations" not in Parameters().to_server_options()  # 0: the method's default, decided by the server
    with pytest.raises(InputError, match="checkpoint file: Remote mode runs the server's own copy"):
        Parameters(checkpoint="/models/sam_vit_b.pth").to_server_options()
    with pytest.raises(InputError, match="base model: Remote mode needs a model name"):
        Parameters(base_model="/data/lineages/abdomen").to_server_options()
