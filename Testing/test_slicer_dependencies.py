"""Tests of MedAdaptSlicerLib.dependencies (the pip step is a real function recording its argument)."""

import pytest

import slicer_fixtures  # noqa: F401  (puts MedAdaptSlicer on sys.path)
from MedAdaptSlicerLib import dependencies


def test_test_environment_has_every_pinned_requirement():
    assert dependencies.missing_requirements() == []
    assert dependencies.core_requirement() is None and dependencies.torch_available()
    assert dependencies.install(pip_install=None) == []  # nothing to do: pip is never called


def test_requirements_are_pinned_and_bundled_packages_skipped():
    assert all("==" in r for r in dependencies.REQUIREMENTS)
    assert dependencies.missing_requirements(["numpy==0.0.1", "torch==0.1", "surely-not-installed-pkg==1.0",
                                              "monai==0.0.0"]) == ["surely-not-installed-pkg==1.0",
                                                                   "monai==0.0.0"]


def test_offline_failure_gives_the_manual_command():
    calls = []

    def offline_pip(arguments):
        calls.append(arguments)
        raise OSError("Network is unreachable")
    with pytest.raises(RuntimeError, match="pip download surely-not-installed-pkg==1.0"):
        dependencies.install(offline_pip, ["surely-not-installed-pkg==1.0"])
    assert calls == ["surely-not-installed-pkg==1.0"]


def test_slicer_installs_every_core_dependency_at_the_pin_ci_uses():
    from slicer_fixtures import REPO
    pins = dict(line.split("==") for line in (REPO / "requirements.txt").read_text().splitlines()
                if "==" in line and not line.startswith("#"))
    for requirement in dependencies.REQUIREMENTS:
        name, version = requirement.split("==")
        assert pins.get(name) == version, requirement
    import re
    import tomllib
    project = tomllib.loads((REPO / "MedAdaptCore" / "pyproject.toml").read_text())["project"]
    needed = {re.split(r"[<>=!~ ]", d)[0] for d in project["dependencies"]} - set(dependencies.BUNDLED)
    assert needed <= {r.split("==")[0] for r in dependencies.REQUIREMENTS}, needed
