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
