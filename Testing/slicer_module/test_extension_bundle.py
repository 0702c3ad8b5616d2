"""The packaged Slicer extension carries the ``medadapt`` core and *Install dependencies* installs it from there.

``medadapt`` is not this project's name on the package index: whoever publishes it would get their code into
Slicer's Python if the module ever asked pip for it by name. These tests evaluate the real
``MedAdaptSlicer/CMakeLists.txt`` with ``cmake -P`` (Slicer's ``slicerMacroBuildScriptedModule`` and ``install``
stood in for by what they install: each SCRIPTS / RESOURCES file at its path relative to the module folder under
the scripted-modules folder, each ``install(FILES)`` file under its DESTINATION), lay out exactly those files as
an installed extension, and run that copy's ``dependencies.install`` with real pip into a fresh target folder,
with no package index (a local wheel folder only).
"""

from __future__ import annotations

import ast
import base64
import hashlib
import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
import zipfile
from importlib import metadata
from pathlib import Path
from types import SimpleNamespace

import pytest

REPO = Path(__file__).resolve().parents[2]
MODULE_SOURCE = REPO / "MedAdaptSlicer"
CORE_SOURCE = REPO / "MedAdaptCore"
SCRIPTED = "lib/Slicer-5.11/qt-scripted-modules"
"""``Slicer_QTSCRIPTEDMODULES_LIB_DIR`` (and its install twin) of an extension built against Slicer 5.11."""

DRIVER = r'''
cmake_minimum_required(VERSION 3.16)
set(CMAKE_CURRENT_SOURCE_DIR "@MODULE@")
set(CMAKE_BINARY_DIR "@BUILD@")
set(Slicer_QTSCRIPTEDMODULES_LIB_DIR "@SCRIPTED@")
set(Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR "@SCRIPTED@")
set(BUILD_TESTING OFF)
set(MANIFEST "@MANIFEST@")
file(WRITE "${MANIFEST}" "")

# slicerMacroBuildScriptedModule -> ctkMacroCompilePythonScript: every script and resource, named relative to the
# module's folder, is copied to that relative path under the scripted-modules folder, which is installed whole.
macro(slicerMacroBuildScriptedModule)
  cmake_parse_arguments(MY_SLICER "WITH_GENERIC_TESTS;WITH_SUBDIR;VERBOSE" "NAME" "SCRIPTS;RESOURCES" ${ARGN})
  if(MY_SLICER_UNPARSED_ARGUMENTS OR MY_SLICER_WITH_SUBDIR)
    message(FATAL_ERROR "not emulated: ${MY_SLICER_UNPARSED_ARGUMENTS} WITH_SUBDIR=${MY_SLICER_WITH_SUBDIR}")
  endif()
  foreach(script IN LISTS MY_SLICER_SCRIPTS)
    get_filename_component(extension "${script}" EXT)
    if(NOT extension MATCHES "py")
      set(script "${script}.py")
    endif()
    file(APPEND "${MANIFEST}" "${CMAKE_CURRENT_SOURCE_DIR}/${script}|@SCRIPTED@/${script}\n")
  endforeach()
  foreach(resource IN LISTS MY_SLICER_RESOURCES)
    file(APPEND "${MANIFEST}" "${CMAKE_CURRENT_SOURCE_DIR}/${resource}|@SCRIPTED@/${resource}\n")
  endforeach()
endmacro()

function(install)
  cmake_parse_arguments(RULE "" "DESTINATION;COMPONENT" "FILES" ${ARGN})
  if(RULE_UNPARSED_ARGUMENTS OR NOT RULE_FILES OR NOT RULE_DESTINATION)
    message(FATAL_ERROR "only install(FILES ... DESTINATION ...) is emulated: install(${ARGN})")
  endif()
  foreach(source IN LISTS RULE_FILES)
    get_filename_component(name "${source}" NAME)
    file(APPEND "${MANIFEST}" "${source}|${RULE_DESTINATION}/${name}\n")
  endforeach()
endfunction()

include("@MODULE@/CMakeLists.txt")
'''


def cmake_executable() -> str:
    found = shutil.which("cmake") or shutil.which("cmake", path=str(Path(sys.executable).parent))
    if found is None:
        pytest.fail("cmake is needed to evaluate MedAdaptSlicer/CMakeLists.txt: apt-get install cmake, or "
                    "pip install cmake")
    return found


def layout_extension(root: Path) -> tuple[Path, Path, list[tuple[Path, str]]]:
    """Evaluate the module's CMakeLists.txt and copy what it installs under ``root/install``; returns the
    installed scripted-modules folder, the build tree's one and the (source, destination) pairs."""
    build, manifest, driver = root / "build", root / "manifest.txt", root / "driver.cmake"
    driver.write_text(DRIVER.replace("@MODULE@", MODULE_SOURCE.as_posix()).replace("@BUILD@", build.as_posix())
                      .replace("@SCRIPTED@", SCRIPTED).replace("@MANIFEST@", manifest.as_posix()))
    run = subprocess.run([cmake_executable(), "-P", str(driver)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr
    installed = []
    for line in manifest.read_text().splitlines():
        source, destination = line.split("|")
        installed.append((Path(source), destination))
    destinations = [d for _, d in installed]
    assert len(destinations) == len(set(destinations)), "a file is installed twice"
    for source, destination in installed:
        assert source.is_file(), source
        (root / "install" / destination).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, root / "install" / destination)
    return root / "install" / SCRIPTED, build / SCRIPTED, installed


def files_under(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def expected_core_files() -> set[str]:
    """What a regular install of the core takes from MedAdaptCore/: pyproject.toml, every module of the
    package, and its package data as pyproject.toml lists it."""
    package = CORE_SOURCE / "src" / "medadapt"
    expected = {"pyproject.toml"}
    for folder, subfolders, names in os.walk(package):
        subfolders[:] = [s for s in subfolders if s != "__pycache__"]
        expected |= {(Path(folder) / n).relative_to(CORE_SOURCE).as_posix() for n in names if n.endswith(".py")}
    data = tomllib.loads((CORE_SOURCE / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    for pattern in data["medadapt"]:
        matches = [p for p in package.glob(pattern) if p.is_file()]
        assert matches, f"package data {pattern} matches nothing"
        expected |= {p.relative_to(CORE_SOURCE).as_posix() for p in matches}
    return expected


@pytest.fixture(scope="module")
def extension(tmp_path_factory):
    root = tmp_path_factory.mktemp("extension")
    scripted, build, installed = layout_extension(root)
    return root, scripted, build, installed


def load_dependencies(scripted: Path, name: str):
    """The laid-out extension's own ``MedAdaptSlicerLib/dependencies.py`` (not the checkout's), seeing a
    Python without ``medadapt`` (a stock Slicer; this test environment has the checkout's core installed)."""
    spec = importlib.util.spec_from_file_location(name, scripted / "MedAdaptSlicerLib" / "dependencies.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    def version(distribution):
        if re.sub(r"[-_.]+", "-", distribution).lower() == "medadapt":
            raise metadata.PackageNotFoundError(distribution)
        return metadata.version(distribution)
    module.metadata = SimpleNamespace(version=version, PackageNotFoundError=metadata.PackageNotFoundError)
    return module


def tiny_wheel(folder: Path, name: str = "tinydep", version: str = "1.0") -> str:
    """A pure-Python wheel written by hand (the one third-party pin of these tests); returns its requirement."""
    dist = f"{name}-{version}.dist-info"
    files = {f"{name}/__init__.py": b"VALUE = 1\n",
             f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
             f"{dist}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}

    def digest(data):
        return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    record = "".join(f"{p},sha256={digest(d)},{len(d)}\n" for p, d in files.items()) + f"{dist}/RECORD,,\n"
    folder.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(folder / f"{name}-{version}-py3-none-any.whl", "w") as wheel:
        for path, data in files.items():
            wheel.writestr(path, data)
        wheel.writestr(f"{dist}/RECORD", record)
    return f"{name}=={version}"


def offline_pip(target: Path, wheels: Path, calls: list):
    """A ``slicer.util.pip_install`` (string or list) running the real ``python -m pip install`` into
    ``target``, with no package index and no pip configuration: only ``wheels`` can be found."""
    def pip_install(requirements):
        arguments = shlex.split(requirements) if isinstance(requirements, str) else list(requirements)
        calls.append(arguments)
        assert "medadapt" not in requirement_names(arguments), f"pip asked for medadapt by name: {arguments}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
        env["PIP_CONFIG_FILE"] = os.devnull
        run = subprocess.run([sys.executable, "-m", "pip", "install", "--no-index", "--find-links", str(wheels),
                              "--target", str(target), "--disable-pip-version-check", "--no-cache-dir", "-q",
                              *arguments], capture_output=True, text=True, env=env, timeout=120)
        if run.returncode:
            raise RuntimeError(run.stdout[-2000:] + run.stderr[-2000:])
    return pip_install


def requirement_names(arguments: list[str]) -> list[str]:
    """The project names pip is asked for by name (options and local paths left out)."""
    names = []
    for argument in arguments:
        if argument.startswith("-") or "/" in argument or "\\" in argument or Path(argument).exists():
            continue
        names.append(re.sub(r"[-_.]+", "-", re.split(r"[<>=!~;\[@ ]", argument)[0]).lower())
    return names


def test_the_extension_installs_the_core_sources_in_their_layout(extension):
    root, scripted, build, installed = extension
    bundled = files_under(scripted / "MedAdaptCore")
    assert set(bundled) == expected_core_files()
    for name, data in bundled.items():
        assert data == (CORE_SOURCE / name).read_bytes(), name
    # the build tree (Slicer run with the build's module path) holds the same copy
    assert files_under(build / "MedAdaptCore") == bundled
    # the module's own files are those of the source folder, at the same relative paths
    for source, destination in installed:
        if not destination.startswith(f"{SCRIPTED}/MedAdaptCore/"):
            assert source == MODULE_SOURCE / destination.removeprefix(f"{SCRIPTED}/")


def local_imports(tree: ast.AST) -> set[str]:
    """The module-folder files (paths relative to it) that ``tree``'s imports name."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            module = (f"MedAdaptSlicerLib.{node.module}" if node.module else "MedAdaptSlicerLib") if node.level \
                else node.module or ""
            names = [module] + [f"{module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        found |= {n.replace(".", "/") + ".py" for n in names
                  if (MODULE_SOURCE / (n.replace(".", "/") + ".py")).is_file()}
    return found


def test_every_module_file_the_extension_imports_is_installed(extension):
    _, scripted, _, _ = extension
    scripts = [p for p in scripted.rglob("*.py") if "MedAdaptCore" not in p.relative_to(scripted).parts]
    assert {"MedAdaptSlicer.py", "SegmentEditorMedAdaptEffect.py", "MedAdaptSlicerLib/dependencies.py"} <= {
        p.relative_to(scripted).as_posix() for p in scripts}
    for script in scripts:
        for name in local_imports(ast.parse(script.read_text())):
            assert (scripted / name).is_file(), f"{script.relative_to(scripted)} imports {name}, not installed"


def test_install_dependencies_installs_the_bundled_core_offline_and_never_by_name(extension, tmp_path):
    _, scripted, _, _ = extension
    dependencies = load_dependencies(scripted, "installed_extension_dependencies")
    core = scripted / "MedAdaptCore"
    # the bundled copy is the one installed: mark it
    marker = "BUNDLE_MARK = 'from the installed extension'\n"
    init = core / "src" / "medadapt" / "__init__.py"
    original = init.read_bytes()
    init.write_text(original.decode() + marker)
    try:
        target, calls = tmp_path / "site-packages", []
        requirement = tiny_wheel(tmp_path / "wheels")
        installed = dependencies.install(offline_pip(target, tmp_path / "wheels", calls), [requirement])
    finally:
        init.write_bytes(original)
    assert installed == [requirement, "medadapt (bundled)"]
    assert dependencies.bundled_core() == core
    assert calls[0] == [requirement]
    assert calls[1][0] == "--no-deps" and "--no-index" in calls[1]
    for arguments in calls:
        assert "medadapt" not in requirement_names(arguments), arguments
    assert not list(core.parent.rglob("*.egg-info")) and not (core / "build").exists()  # built from a copy
    probe = ("import importlib.metadata as m, json, sys; sys.path.insert(0, sys.argv[1]); import medadapt, tinydep;"
             "from medadapt.sample import __path__ as sample;"
             "print(json.dumps([medadapt.__file__, medadapt.BUNDLE_MARK, tinydep.__file__,"
             " m.version('medadapt'), sorted(__import__('os').listdir(list(sample)[0]))]))")
    run = subprocess.run([sys.executable, "-I", "-S", "-c", probe, str(target)], capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 0, run.stderr
    medadapt_file, mark, tinydep_file, version, sample = json.loads(run.stdout)
    assert Path(medadapt_file) == target / "medadapt" / "__init__.py"
    assert mark == "from the installed extension"
    assert Path(tinydep_file).is_relative_to(target)
    assert version == tomllib.loads((CORE_SOURCE / "pyproject.toml").read_text())["project"]["version"]
    assert {"ct_abdomen_image.nii.gz", "README.md"} <= set(sample)
    assert (target / "medadapt" / "backends" / "models.json").is_file()


def test_without_the_bundled_core_install_refuses_before_calling_pip(extension, tmp_path):
    _, scripted, _, _ = extension
    partial = tmp_path / "qt-scripted-modules"
    shutil.copytree(scripted, partial, ignore=shutil.ignore_patterns("MedAdaptCore"))
    dependencies = load_dependencies(partial, "partial_extension_dependencies")
    calls = []
    with pytest.raises(RuntimeError, match="not bundled with this module") as failure:
        dependencies.install(calls.append, ["surely-not-installed-pkg==1.0"])
    assert calls == []
    assert isinstance(failure.value, dependencies.CoreNotBundledError) and dependencies.bundled_core() is None
    assert str(partial / "MedAdaptCore") in str(failure.value)
    assert "never installs 'medadapt' from the package index" in str(failure.value)
    # the module still reports the core as missing (no exception) so that the GUI says what to do
    assert "medadapt" in dependencies.missing_packages()
