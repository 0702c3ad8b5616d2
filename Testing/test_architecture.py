"""The package keeps the one direction of imports that ARCHITECTURE.md draws (import-linter contracts in
MedAdaptCore/pyproject.toml), and the method registry matches the method names the command line knows."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_import_contracts_are_kept():
    child = subprocess.run([sys.executable, "-c", "import sys; from importlinter.cli import lint_imports; "
                            f"sys.exit(lint_imports(config_filename={str(REPO / 'MedAdaptCore' / 'pyproject.toml')!r}, "
                            "no_cache=True, no_logo=True))"], capture_output=True, text=True, timeout=300)
    assert child.returncode == 0, child.stdout[-3000:] + child.stderr[-2000:]
    assert "2 kept, 0 broken" in child.stdout


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
