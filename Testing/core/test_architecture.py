"""The package keeps the one direction of imports that ARCHITECTURE.md draws (import-linter contracts in
MedAdaptCore/pyproject.toml), the front ends import the core and never the other way (MedAdaptWeb/pyproject.toml),
the core's command line gets ``medadapt web`` from an entry point, and the method registry matches the method
names the command line knows."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def lint_imports(config: Path, *paths: Path) -> str:
    """``lint-imports --config config`` with ``paths`` first on ``sys.path``: its report, asserting it passed."""
    child = subprocess.run([sys.executable, "-c", f"import sys; sys.path[:0] = {[str(path) for path in paths]!r}; "
                            "from importlinter.cli import lint_imports; "
                            f"sys.exit(lint_imports(config_filename={str(config)!r}, no_cache=True, no_logo=True))"],
                           capture_output=True, text=True, timeout=300)
    assert child.returncode == 0, child.stdout[-3000:] + child.stderr[-2000:]
    return child.stdout


def test_import_contracts_are_kept():
    assert "2 kept, 0 broken" in lint_imports(REPO / "MedAdaptCore" / "pyproject.toml")


def test_front_ends_import_the_core_and_never_the_other_way():
    # MedAdaptSlicerLib is no pip package: the Slicer module's folder goes on the path, as medadapt web does
    assert "2 kept, 0 broken" in lint_imports(REPO / "MedAdaptWeb" / "pyproject.toml", REPO / "MedAdaptSlicer")


def test_the_core_gets_the_web_command_from_its_entry_point(monkeypatch):
    from medadapt.cli import main
    from medadapt_web import cli

    assert main.added_commands() == {"web": cli}
    assert "serve,web}" in main.build_parser().format_usage()
    monkeypatch.setattr(main, "entry_points", lambda group: [])  # medadapt_web not installed: no web, no error
    assert "serve}" in main.build_parser().format_usage()


def test_config_imports_without_torch():
    blocker = ("import importlib.abc, sys\n"
               "class Block(importlib.abc.MetaPathFinder):\n"
               "    def find_spec(self, name, path=None, target=None):\n"
               "        if name.split('.')[0] in {'torch', 'monai', 'peft', 'segment_anything', 'timm'}:\n"
               "            raise ImportError(name)\n"
               "sys.meta_path.insert(0, Block())\n"
               "from medadapt.config import AdaptConfig\n"
               "from medadapt.methods.registry import METHODS\n"
               "print(AdaptConfig().method, len(METHODS))\n")
    child = subprocess.run([sys.executable, "-c", blocker], capture_output=True, text=True, timeout=120)
    assert child.returncode == 0, child.stderr[-2000:]
    from medadapt.methods.registry import METHODS
    assert child.stdout.split() == ["lora", str(len(METHODS))]
