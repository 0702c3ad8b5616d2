"""Static checks of the desktop shell (MedAdaptSlicer.py cannot be imported without Slicer's Qt)."""

import ast
import re
import xml.etree.ElementTree as ET

from slicer_fixtures import REPO

MODULE = REPO / "MedAdaptSlicer" / "MedAdaptSlicer.py"
UI = REPO / "MedAdaptSlicer" / "Resources" / "UI" / "MedAdaptSlicer.ui"
LIB = REPO / "MedAdaptSlicer" / "MedAdaptSlicerLib"


def ui_widget_names() -> set[str]:
    return {w.get("name") for w in ET.parse(UI).iter("widget")}


def test_every_widget_the_module_uses_exists_in_the_ui():
    used = set(re.findall(r"self\.ui\.(\w+)", MODULE.read_text()))
    assert used, "the widget uses no self.ui.<name>?"
    missing = sorted(used - ui_widget_names())
    assert not missing, f"widgets used by MedAdaptSlicer.py but absent from {UI.name}: {missing}"


def test_ui_has_the_required_controls():
    required = {"inputVolumeSelector", "segmentSelector", "positivePointsSelector", "negativePointsSelector",
                "roiSelector", "methodComboBox", "deviceComboBox", "advancedCollapsibleButton", "iterationsSpinBox",
                "rankSpinBox", "synthesisSpinBox", "seedSpinBox", "adaptButton", "cancelButton", "progressBar",
                "statusLabel", "acceptButton", "rejectButton", "livePreviewCheckBox", "propagateButton",
                "saveAdapterButton", "loadAdapterButton", "applyAdapterButton", "diceLabel"}
    assert not required - ui_widget_names()


def test_method_choices_are_the_core_methods_and_iterations_default_to_zero():
    from medadapt.methods.registry import METHODS
    widgets = {w.get("name"): w for w in ET.parse(UI).iter("widget")}
    choices = [item.findtext("property/string") for item in widgets["methodComboBox"].iter("item")]
    assert choices == list(METHODS)
    iterations = {p.get("name"): p.findtext("*") for p in widgets["iterationsSpinBox"].iter("property")}
    assert (iterations["minimum"], iterations["value"], iterations["specialValueText"]) == ("0", "0", "default")


def test_module_imports_nothing_heavy_at_load_and_lib_has_no_gui_imports():
    tree = ast.parse(MODULE.read_text())
    top = {alias.name.split(".")[0] for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))
           for alias in node.names} | {node.module.split(".")[0] for node in tree.body
                                       if isinstance(node, ast.ImportFrom) and node.module}
    assert not top & {"torch", "medadapt", "MedAdaptSlicerLib", "numpy"}
    for path in LIB.glob("*.py"):
        text = path.read_text()
        for forbidden in ("import qt", "import ctk", "slicer.app", "ScriptedLoadableModule"):
            # whole names only: trame_slicer.app (the browser UI's package) is not Slicer's Qt application
            assert not re.search(rf"(?<![\w.]){re.escape(forbidden)}\b", text), f"{path.name} uses {forbidden}"


def test_cmake_lists_every_python_file_and_resource():
    cmake = (REPO / "MedAdaptSlicer" / "CMakeLists.txt").read_text()
    for path in sorted(LIB.glob("*.py")):
        assert f"${{MODULE_NAME}}Lib/{path.name}" in cmake, path.name
    for name in ("batch.py", "Resources/UI/${MODULE_NAME}.ui", "Resources/Icons/${MODULE_NAME}.png",
                 "slicer_add_python_unittest"):
        assert name in cmake
