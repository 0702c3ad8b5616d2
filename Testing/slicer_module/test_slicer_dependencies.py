"""Tests of MedAdaptSlicerLib.dependencies (the pip step is a real function recording its argument)."""

from pathlib import Path

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


def test_a_source_checkout_uses_its_own_core_folder():
    from slicer_fixtures import REPO
    assert dependencies.bundled_core() == REPO / "MedAdaptCore"
    assert dependencies.CORE_CANDIDATES[0] == REPO / "MedAdaptSlicer" / "MedAdaptCore"  # the installed layout


def test_only_a_folder_holding_the_medadapt_project_counts_as_the_core(tmp_path):
    def project(folder, name):
        (folder / "src" / "medadapt").mkdir(parents=True)
        (folder / "src" / "medadapt" / "__init__.py").write_text("")
        (folder / "pyproject.toml").write_text(f'[project]\nname = "{name}"\nversion = "1"\n')
        return folder
    other, ours = project(tmp_path / "a", "not-medadapt"), project(tmp_path / "b", "MedAdapt")
    assert dependencies.bundled_core([tmp_path / "absent", other, ours]) == ours
    assert dependencies.bundled_core([other]) is None


def test_the_core_is_pip_installed_from_its_folder_never_by_name(monkeypatch, tmp_path):
    for offline in (True, False):
        monkeypatch.setattr(dependencies, "_setuptools_builds_offline", lambda: offline)
        arguments = dependencies.core_install_arguments(tmp_path / "My Core")
        assert arguments[0] == "--no-deps" and arguments[-1] == str(tmp_path / "My Core")
        assert ("--no-index" in arguments) == ("--no-build-isolation" in arguments) == offline
        assert [a for a in arguments[:-1] if not a.startswith("--")] == []
    import setuptools
    monkeypatch.undo()
    assert dependencies._setuptools_builds_offline() == (
        tuple(int(n) for n in setuptools.__version__.split(".")[:2]) >= dependencies.SETUPTOOLS_FOR_LOCAL_BUILD)


def test_a_missing_core_without_a_bundled_copy_is_an_error_not_a_download(monkeypatch, tmp_path):
    monkeypatch.setattr(dependencies, "core_installed", lambda: False)
    monkeypatch.setattr(dependencies, "CORE_CANDIDATES", (tmp_path / "MedAdaptCore",))
    calls = []
    with pytest.raises(dependencies.CoreNotBundledError, match="reinstall it from the Extensions Manager"):
        dependencies.install(calls.append, [])
    assert calls == []
    assert "medadapt" in dependencies.missing_packages()  # the GUI still says what is missing


def test_the_core_is_installed_from_a_clean_copy_of_the_bundle(monkeypatch, tmp_path):
    from slicer_fixtures import REPO
    monkeypatch.setattr(dependencies, "core_installed", lambda: False)
    seen = []

    def pip_install(arguments):
        folder = Path(arguments[-1])
        seen.append((list(arguments), sorted(p.name for p in [*folder.iterdir(), *(folder / "src").iterdir()]),
                     (folder / "src" / "medadapt" / "__init__.py").read_bytes()))
    assert dependencies.install(pip_install, []) == ["medadapt (bundled)"]
    (arguments, names, init), = seen
    assert arguments[0] == "--no-deps" and Path(arguments[-1]).name == "MedAdaptCore"
    assert Path(arguments[-1]) != REPO / "MedAdaptCore" and not Path(arguments[-1]).exists()  # a temporary copy
    assert {"pyproject.toml", "src", "medadapt"} <= set(names)
    assert not [n for n in names if n == "build" or n.endswith(".egg-info")]  # no build leftovers of the checkout
    assert init == (REPO / "MedAdaptCore" / "src" / "medadapt" / "__init__.py").read_bytes()
