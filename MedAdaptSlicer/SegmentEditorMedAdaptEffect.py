"""The MedAdapt Segment Editor effect: "Fill between slices, but smart".

Qt shell only, registered by the MedAdapt module at startup: paint a few slices, pick the effect, press
**Adapt** (progress, Cancel), look at the preview, press **Apply** (one undo step; the editor's editable area,
overwrite and intensity-mask settings apply) or **Cancel**. The work is done by
:class:`MedAdaptSlicerLib.effect.EffectSession`, imported at the first Adapt, so the effect appears in a Slicer
that has none of MedAdapt's packages yet and says where to install them. "Run on: Remote" (the module's Compute
setting, shared) adapts on the MedAdapt server set in the module instead, with nothing installed.
"""

import os

import qt
import slicer
from SegmentEditorEffects import AbstractScriptedSegmentEditorEffect


class SegmentEditorEffect(AbstractScriptedSegmentEditorEffect):
    """Adapt / Apply / Cancel in the Segment Editor, over :class:`MedAdaptSlicerLib.effect.EffectSession`."""

    def __init__(self, scriptedEffect):
        scriptedEffect.name = "MedAdapt"
        scriptedEffect.perSegment = False
        scriptedEffect.requireSegments = True
        AbstractScriptedSegmentEditorEffect.__init__(self, scriptedEffect)
        self.session = None
        self.job = None
        self.timer = None
        self.logic = None

    def clone(self):
        """A new instance of this effect (the Segment Editor asks one per editor widget)."""
        import qSlicerSegmentationsEditorEffectsPythonQt as effects
        cloned = effects.qSlicerSegmentEditorScriptedEffect(None)
        cloned.setPythonSource(__file__.replace("\\", "/"))
        return cloned

    def icon(self):
        """The MedAdapt module icon."""
        path = os.path.join(os.path.dirname(__file__), "Resources", "Icons", "MedAdaptSlicer.png")
        return qt.QIcon(path) if os.path.exists(path) else qt.QIcon()

    def helpText(self):
        """Shown under the effect buttons."""
        return ("<html>Segment the whole volume from a few painted slices, like Fill between slices but with an "
                "adapted foundation model.<p>Paint the structure on two or three slices (one works too), press "
                "<b>Adapt</b>, check the preview, then <b>Apply</b> (undoable) or <b>Cancel</b>. The editable area "
                "and overwrite settings below apply. Adapter files, clicks and other volumes are in the MedAdapt "
                "module.</p><p><b>Run on: Remote</b> adapts on the MedAdapt server whose URL and token are set in "
                "the module's Compute section; this computer then needs nothing installed.</p></html>")

    def setupOptionsFrame(self):
        """Method, device, base model (checkpoint file, input size), LoRA placement, which segments,
        Adapt / Cancel / Apply, progress and status. The choices are the module's (the same saved settings),
        Local / Remote included."""
        self.computeModeSelector = qt.QComboBox()
        self.computeModeSelector.addItems(["Local", "Remote"])
        self.computeModeSelector.toolTip = ("Local: this computer. Remote: the MedAdapt server set in the MedAdapt "
                                            "module (Compute section)")
        self.scriptedEffect.addLabeledOptionsWidget("Run on:", self.computeModeSelector)
        self.methodSelector = qt.QComboBox()
        self.methodSelector.toolTip = "lora (default) adapts the model; fill is Slicer's Fill between slices"
        self.scriptedEffect.addLabeledOptionsWidget("Method:", self.methodSelector)
        self.deviceSelector = qt.QComboBox()
        self.deviceSelector.addItems(["auto", "cpu", "cuda", "mps"])
        self.scriptedEffect.addLabeledOptionsWidget("Device:", self.deviceSelector)
        from MedAdaptSlicerLib.parameters import BASE_MODELS
        self.baseModelSelector = qt.QComboBox()
        self.baseModelSelector.addItems(list(BASE_MODELS))
        self.scriptedEffect.addLabeledOptionsWidget("Base model:", self.baseModelSelector)
        self.checkpointEdit = qt.QLineEdit()
        self.checkpointEdit.placeholderText = "empty: download once (LiteMedSAM ships with MedAdapt)"
        self.scriptedEffect.addLabeledOptionsWidget("Checkpoint file:", self.checkpointEdit)
        self.inputSizeSpinBox = qt.QSpinBox()
        self.inputSizeSpinBox.maximum, self.inputSizeSpinBox.singleStep = 4096, 64
        self.inputSizeSpinBox.specialValueText = "model's own"
        self.scriptedEffect.addLabeledOptionsWidget("Input size:", self.inputSizeSpinBox)
        self.loraPartsSelector = qt.QComboBox()
        self.loraPartsSelector.addItems(["", "decoder", "encoder", "encoder,decoder"])
        self.loraPartsSelector.toolTip = "empty: decoder on a CPU, encoder and decoder on a CUDA GPU"
        self.scriptedEffect.addLabeledOptionsWidget("LoRA placement:", self.loraPartsSelector)
        self.allSegmentsCheckBox = qt.QCheckBox("Adapt every painted segment (else the selected one)")
        self.scriptedEffect.addOptionsWidget(self.allSegmentsCheckBox)
        self.adaptButton = qt.QPushButton("Adapt")
        self.cancelButton = qt.QPushButton("Cancel")
        self.applyButton = qt.QPushButton("Apply")
        buttons = qt.QHBoxLayout()
        for button in (self.adaptButton, self.cancelButton, self.applyButton):
            buttons.addWidget(button)
        self.scriptedEffect.addOptionsWidget(buttons)
        self.progressBar = qt.QProgressBar()
        self.progressBar.visible = False
        self.scriptedEffect.addOptionsWidget(self.progressBar)
        self.statusLabel = qt.QLabel()
        self.statusLabel.wordWrap = True
        self.scriptedEffect.addOptionsWidget(self.statusLabel)
        self.adaptButton.connect("clicked(bool)", self.onAdapt)
        self.cancelButton.connect("clicked(bool)", self.onCancel)
        self.applyButton.connect("clicked(bool)", self.onApply)
        self.computeModeSelector.connect("currentIndexChanged(int)", self.onComputeModeChanged)
        self.timer = qt.QTimer()
        self.timer.setInterval(100)
        self.timer.connect("timeout()", self.onPoll)
        self.restoreSettings()
        self.updateButtons()

    def settingWidgets(self):
        """Setting name -> (widget, property); the names are the module's, so both show the same choices."""
        return {"device": (self.deviceSelector, "currentText"), "baseModel": (self.baseModelSelector, "currentText"),
                "checkpoint": (self.checkpointEdit, "text"), "inputSize": (self.inputSizeSpinBox, "value"),
                "loraParts": (self.loraPartsSelector, "currentText"),
                "effectAllSegments": (self.allSegmentsCheckBox, "checked"),
                "computeMode": (self.computeModeSelector, "currentText")}

    def restoreSettings(self):
        """The choices last used in the effect or the module."""
        from MedAdaptSlicerLib.settings import restore_settings
        restore_settings(qt.QSettings(), self.settingWidgets())

    def saveSettings(self):
        """Remember the choices (shared with the module)."""
        from MedAdaptSlicerLib.settings import save_settings
        save_settings(qt.QSettings(), {"method": (self.methodSelector, "currentText"), **self.settingWidgets()})

    def deactivate(self):
        """Leaving the effect keeps no half-done work: a running job is cancelled, the preview removed."""
        self.onCancel()

    def isRemote(self):
        """Whether "Run on" says Remote."""
        return self.computeModeSelector.currentText == "Remote"

    def onComputeModeChanged(self, *unused):
        """Remember Local / Remote (the module shows the same choice)."""
        from MedAdaptSlicerLib.settings import save_settings
        save_settings(qt.QSettings(), {"computeMode": (self.computeModeSelector, "currentText")})
        self.statusLabel.text = ""
        self.updateButtons()

    def activeLogic(self):
        """The logic of the saved Compute choice: Local, or Remote with the server URL and token saved by the
        module (a new one when they change)."""
        from MedAdaptSlicerLib.base_logic import logic_for
        self.logic = logic_for(qt.QSettings(), self.logic)
        return self.logic

    def updateButtons(self):
        """Adapt needs the dependencies (Local) or a server URL (Remote); Apply needs a preview; Cancel needs a
        job or a preview."""
        from MedAdaptSlicerLib.dependencies import missing_packages
        from MedAdaptSlicerLib.settings import remote_settings
        remote = self.isRemote()
        missing = [] if remote else missing_packages()
        no_server = remote and not remote_settings(qt.QSettings())[1]
        if missing:
            self.statusLabel.text = ("Open the MedAdapt module and press Install dependencies: missing "
                                     + ", ".join(missing) + ".")
        elif no_server:
            self.statusLabel.text = "Remote: set the server URL and token in the MedAdapt module (Compute section)."
        if not missing and not self.methodSelector.count:
            if remote:
                from MedAdaptSlicerLib.remote import METHOD_NAMES
            else:
                from medadapt.methods.registry import METHODS as METHOD_NAMES
            self.methodSelector.addItems(list(METHOD_NAMES))
            self.methodSelector.currentText = qt.QSettings().value("MedAdapt/method", "lora")
        running = self.job is not None and self.job.state == "running"
        previewing = self.session is not None and bool(self.session.previews)
        self.adaptButton.enabled = not missing and not no_server and not running
        self.applyButton.enabled = previewing and not running
        self.cancelButton.enabled = running or previewing

    def editorSession(self):
        """The effect's session for the current segment editor node (a new one when the node changed)."""
        from MedAdaptSlicerLib.effect import EffectSession
        editor = self.scriptedEffect.parameterSetNode()
        if self.session is None or self.session.editor_node is not editor:
            self.session = EffectSession(editor, writer=EffectWriter(self.scriptedEffect))
        return self.session

    def onAdapt(self):
        """Start adapting (the selected segment, or every painted one)."""
        from MedAdaptSlicerLib.effect import painted_segment_ids
        from MedAdaptSlicerLib.parameters import Parameters
        self.saveSettings()
        with slicer.util.tryWithErrorDisplay("MedAdapt could not start.", waitCursor=True):
            session = self.editorSession()
            editor = session.editor_node
            ids = (painted_segment_ids(editor.GetSegmentationNode(), editor.GetSourceVolumeNode())
                   if self.allSegmentsCheckBox.checked else None)
            parameters = Parameters(method=self.methodSelector.currentText, device=self.deviceSelector.currentText,
                                    base_model=self.baseModelSelector.currentText,
                                    checkpoint=self.checkpointEdit.text.strip(), input_size=self.inputSizeSpinBox.value,
                                    lora_parts=self.loraPartsSelector.currentText)
            logic = self.activeLogic()
            self.job = session.start_adapt(parameters, ids, self.onProgress, self.onDone, logic=logic)
            self.progressBar.visible = True
            self.statusLabel.text = f"Adapting on {logic.client.url}..." if self.isRemote() else "Adapting..."
            self.timer.start()
        self.updateButtons()

    def onProgress(self, event):
        """Show one progress report."""
        self.progressBar.maximum = max(1, event.total)
        self.progressBar.value = event.step
        self.statusLabel.text = f"{event.stage} {event.step}/{event.total}"

    def onDone(self, job):
        """Show the outcome of a finished job."""
        self.timer.stop()
        self.progressBar.visible = False
        self.statusLabel.text = {"done": "Preview ready: Apply or Cancel.", "cancelled": "Cancelled."}.get(
            job.state, f"Failed: {job.error}")
        self.updateButtons()

    def onPoll(self):
        """Deliver the worker's progress and result on the GUI thread."""
        if self.session is not None:
            self.session.runner.poll()

    def onCancel(self):
        """Cancel a running job, or drop the preview."""
        if self.job is not None and self.job.state == "running":
            self.job.cancel()
        elif self.session is not None:
            self.session.remove_preview()
            self.statusLabel.text = ""
        self.updateButtons()

    def onApply(self):
        """Write the previews into their segments (one undo step)."""
        with slicer.util.tryWithErrorDisplay("MedAdapt could not apply the preview.", waitCursor=True):
            written = self.editorSession().apply()
            self.statusLabel.text = f"Applied to {len(written)} segment(s)."
        self.updateButtons()


class EffectWriter:
    """Writes through the Segment Editor widget (its masking settings and undo history)."""

    def __init__(self, scriptedEffect):
        self.scriptedEffect = scriptedEffect

    def save_state(self):
        """One undo step for the whole Apply."""
        self.scriptedEffect.saveStateForUndo()

    def modify(self, segmentation_node, segment_id, labelmap):
        """Set the segment to ``labelmap`` inside the editable area."""
        self.scriptedEffect.modifySegmentByLabelmap(segmentation_node, segment_id, labelmap,
                                                    slicer.qSlicerSegmentEditorAbstractEffect.ModificationModeSet)
