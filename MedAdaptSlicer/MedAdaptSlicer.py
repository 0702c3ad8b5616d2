"""MedAdapt: adapt a medical segmentation foundation model to a few painted slices, inside 3D Slicer.

Desktop shell only: the module description, the widget that wires the .ui to
:class:`MedAdaptSlicerLib.logic.MedAdaptLogic` (Local) or :class:`MedAdaptSlicerLib.remote.RemoteLogic`
(Remote: a ``medadapt serve`` server does the work), and the self-test. Heavy packages (torch, the core) are
imported only when a Local button needs them; Remote mode never imports them.
"""

import os
import threading

import qt
import slicer
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                           ScriptedLoadableModuleTest, ScriptedLoadableModuleWidget)
from slicer.util import VTKObservationMixin

ADAPTER_FOLDER_SETTING = "MedAdapt/adapterFolder"
COLLECTION_FOLDER_SETTING = "MedAdapt/collectionFolder"
AUTOMATIC_MODALITY = "Automatic"
"""The universal model's modality choice that leaves it to the model: CT for Hounsfield units, else its only
other modality."""
os.environ.setdefault("PYTORCH_ENABLE_MPS_FALLBACK", "1")  # Apple MPS: operators Metal lacks run on the CPU


class MedAdaptSlicer(ScriptedLoadableModule):
    """Module description shown in Slicer."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "MedAdapt"
        self.parent.categories = ["Segmentation"]
        self.parent.dependencies = []
        self.parent.contributors = ["MedAdapt contributors"]
        self.parent.helpText = (
            "Paint a structure on two or three slices, press <b>Adapt</b>: MedAdapt fine-tunes small LoRA adapters "
            "of a medical segmentation foundation model (LiteMedSAM) on those slices and exemplar-guided synthetic "
            "variations of them, then segments the whole volume into a preview segment. <b>Accept</b> copies the "
            "preview into your segment (undoable), <b>Reject</b> removes it. Positive/negative points and an ROI "
            "refine a slice interactively; <b>Propagate</b> extends it. Adapters can be saved and applied to other "
            "volumes, with a few clicks or painted slices, or with no prompt at all: a LoRA adapter registers its "
            "atlas (this volume and its painting) onto the new volume, FSEFT heads find the structure themselves. A "
            "<b>universal model</b> segments the tasks it learned without any prompt, each into a new segment; "
            "<b>Add to collection</b> keeps accepted segments as its training data. Under <b>Compute</b>, "
            "<b>Remote</b> runs Adapt, Apply and Propagate on a MedAdapt server (medadapt serve) instead of this "
            "computer, which then needs nothing installed.")
        self.parent.acknowledgementText = (
            "MedAdapt builds on: exemplar-guided data synthesis ('Cheap Lunch' for medical image segmentation); "
            "FSEFT, few-shot efficient fine-tuning of volumetric segmentation foundation models; SAMed, "
            "low-rank (LoRA) adaptation of the Segment Anything Model to medical images; and the MedSAM / "
            "LiteMedSAM foundation models (Ma et al., Segment Anything in Medical Images).")
        if hasattr(slicer, "app"):
            slicer.app.connect("startupCompleted()", registerEditorEffect)


def registerEditorEffect():
    """Add the MedAdapt effect to the Segment Editor (beside Fill between slices)."""
    import qSlicerSegmentationsEditorEffectsPythonQt as effects
    instance = effects.qSlicerSegmentEditorScriptedEffect(None)
    source = os.path.join(os.path.dirname(__file__), "SegmentEditorMedAdaptEffect.py")
    instance.setPythonSource(source.replace("\\", "/"))
    instance.self().register()


class MedAdaptSlicerWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """Loads the .ui and forwards every button to the logic; long jobs run in a worker thread polled by a timer."""

    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self.remoteLogic = None
        self.jobLogic = None
        self.job = None
        self.timer = None
        self.interactive_index = None

    def setup(self):
        """Build the GUI from the .ui file and connect it."""
        ScriptedLoadableModuleWidget.setup(self)
        widget = slicer.util.loadUI(self.resourcePath("UI/MedAdaptSlicer.ui"))
        self.layout.addWidget(widget)
        self.ui = slicer.util.childWidgetVariables(widget)
        widget.setMRMLScene(slicer.mrmlScene)
        self.logic = MedAdaptSlicerLogic()
        self.timer = qt.QTimer()
        self.timer.setInterval(100)
        self.timer.connect("timeout()", self.onPoll)
        self.ui.adaptButton.connect("clicked(bool)", self.onAdapt)
        self.ui.cancelButton.connect("clicked(bool)", self.onCancel)
        self.ui.acceptButton.connect("clicked(bool)", self.onAccept)
        self.ui.rejectButton.connect("clicked(bool)", self.onReject)
        self.ui.propagateButton.connect("clicked(bool)", self.onPropagate)
        self.ui.saveAdapterButton.connect("clicked(bool)", self.onSaveAdapter)
        self.ui.loadAdapterButton.connect("clicked(bool)", self.onLoadAdapter)
        self.ui.applyAdapterButton.connect("clicked(bool)", self.onApplyAdapter)
        self.ui.addToLineageButton.connect("clicked(bool)", self.onAddToLineage)
        self.ui.addToCollectionButton.connect("clicked(bool)", self.onAddToCollection)
        self.ui.universalSegmentButton.connect("clicked(bool)", self.onUniversalSegment)
        self.ui.universalModelPathLineEdit.connect("currentPathChanged(QString)", self.onUniversalModelChanged)
        self.ui.universalTasksListWidget.connect("itemChanged(QListWidgetItem*)", self.updateButtons)
        self.ui.inputVolumeSelector.connect("currentNodeChanged(vtkMRMLNode*)", self.updateButtons)
        self.ui.segmentSelector.connect("currentNodeChanged(vtkMRMLNode*)", self.updateButtons)
        self.ui.installDependenciesButton.connect("clicked(bool)", self.onInstallDependencies)
        self.ui.testConnectionButton.connect("clicked(bool)", self.onTestConnection)
        self.ui.computeModeComboBox.connect("currentIndexChanged(int)", self.onComputeModeChanged)
        self.ui.serverUrlLineEdit.connect("editingFinished()", self.saveServerSettings)
        self.ui.serverTokenLineEdit.connect("editingFinished()", self.saveServerSettings)
        for selector in (self.ui.positivePointsSelector, self.ui.negativePointsSelector, self.ui.roiSelector):
            selector.connect("currentNodeChanged(vtkMRMLNode*)", self.onPromptNodeChanged)
        self.ui.segmentSelector.connect("currentSegmentChanged(QString)", self.updateButtons)
        self.restoreSettings()
        self.updateButtons()

    def cleanup(self):
        """Stop observing and cancel a running job when the module is closed (Remote: the server's job too, and
        this session's uploads there are deleted)."""
        self.removeObservers()
        if self.job is not None:
            self.job.cancel()
        if self.remoteLogic is not None:
            threading.Thread(target=self.remoteLogic.close, name="MedAdapt remote cleanup", daemon=True).start()

    # --- inputs -------------------------------------------------------------------------------------------------
    def parameters(self):
        """The Advanced panel's values as :class:`Parameters`."""
        from MedAdaptSlicerLib.parameters import Parameters
        return Parameters(method=self.ui.methodComboBox.currentText, device=self.ui.deviceComboBox.currentText,
                          base_model=self.ui.baseModelComboBox.currentText,
                          checkpoint=self.ui.checkpointPathLineEdit.currentPath,
                          input_size=self.ui.inputSizeSpinBox.value, lora_parts=self.ui.loraPartsComboBox.currentText,
                          iterations=self.ui.iterationsSpinBox.value, rank=self.ui.rankSpinBox.value,
                          synthesis_per_exemplar=self.ui.synthesisSpinBox.value, seed=self.ui.seedSpinBox.value,
                          between=self.ui.betweenComboBox.currentText)

    def settingWidgets(self):
        """Setting name -> (widget, property) of every choice kept across Slicer restarts."""
        return {"method": (self.ui.methodComboBox, "currentText"), "device": (self.ui.deviceComboBox, "currentText"),
                "baseModel": (self.ui.baseModelComboBox, "currentText"),
                "checkpoint": (self.ui.checkpointPathLineEdit, "currentPath"),
                "inputSize": (self.ui.inputSizeSpinBox, "value"), "loraParts": (self.ui.loraPartsComboBox, "currentText"),
                "iterations": (self.ui.iterationsSpinBox, "value"), "rank": (self.ui.rankSpinBox, "value"),
                "synthesis": (self.ui.synthesisSpinBox, "value"), "seed": (self.ui.seedSpinBox, "value"),
                "between": (self.ui.betweenComboBox, "currentText"), **self.serverSettingWidgets(),
                **self.computeModeSetting()}

    def computeModeSetting(self):
        """Local or Remote (shared with the Segment Editor effect)."""
        from MedAdaptSlicerLib.settings import COMPUTE_MODE
        return {COMPUTE_MODE: (self.ui.computeModeComboBox, "currentText")}

    def serverSettingWidgets(self):
        """The server's URL and token (kept in Slicer's settings; the token in plain text, see README)."""
        from MedAdaptSlicerLib.settings import SERVER_TOKEN, SERVER_URL
        return {SERVER_URL: (self.ui.serverUrlLineEdit, "text"), SERVER_TOKEN: (self.ui.serverTokenLineEdit, "text")}

    def saveServerSettings(self):
        """Remember the server's URL and token now (the Segment Editor effect reads them too)."""
        from MedAdaptSlicerLib.settings import save_settings
        save_settings(qt.QSettings(), self.serverSettingWidgets())

    def restoreSettings(self):
        """Put back the choices of the last session (Slicer's settings file, as other modules keep theirs),
        after offering the lineages added to before as base models."""
        from MedAdaptSlicerLib.settings import LINEAGES, PREFIX, remembered_lineages, restore_settings
        for folder in remembered_lineages(qt.QSettings().value(PREFIX + LINEAGES)):
            if self.ui.baseModelComboBox.findText(folder) < 0:
                self.ui.baseModelComboBox.addItem(folder)
        restore_settings(qt.QSettings(), self.settingWidgets())

    def saveSettings(self):
        """Remember the current choices for the next session."""
        from MedAdaptSlicerLib.settings import save_settings
        save_settings(qt.QSettings(), self.settingWidgets())

    def target(self):
        """(volume, segmentation, segment ID) chosen in the Inputs panel."""
        return (self.ui.inputVolumeSelector.currentNode(), self.ui.segmentSelector.currentNode(),
                self.ui.segmentSelector.currentSegmentID())

    def prompts(self):
        """(positive points, negative points, ROI) nodes; each may be ``None``."""
        return (self.ui.positivePointsSelector.currentNode(), self.ui.negativePointsSelector.currentNode(),
                self.ui.roiSelector.currentNode())

    # --- Local / Remote ---------------------------------------------------------------------------------------------
    def isRemote(self):
        """Whether the Compute section says Remote (a MedAdapt server does the work)."""
        return self.ui.computeModeComboBox.currentText == "Remote"

    def activeLogic(self):
        """The logic the buttons use: the local one, or in Remote mode the remote one of the URL and token shown
        (a new one when they change; its errors name a bad URL)."""
        if not self.isRemote():
            return self.logic
        from MedAdaptSlicerLib.remote import RemoteLogic
        url, token = self.ui.serverUrlLineEdit.text.strip(), self.ui.serverTokenLineEdit.text.strip()
        current = self.remoteLogic
        if current is None or (current.client.url, current.client.token) != (url.rstrip("/"), token):
            self.remoteLogic = RemoteLogic(url, token)
            if current is not None and self.job is None:
                threading.Thread(target=current.close, name="MedAdapt remote cleanup", daemon=True).start()
        return self.remoteLogic

    def heldModel(self):
        """The model Apply uses in the current mode (``None`` before any; never loads torch)."""
        if self.isRemote():
            return self.remoteLogic.model if self.remoteLogic is not None else None
        return self.logic.model if self.logic.started else None  # no heavy import before the first job

    def onComputeModeChanged(self, *unused):
        from MedAdaptSlicerLib.settings import save_settings
        save_settings(qt.QSettings(), self.computeModeSetting())
        self.interactive_index = None
        self.setStatus("Remote: Adapt, Apply and Propagate run on the server; press Test connection to check it."
                       if self.isRemote() else "Local: MedAdapt runs on this computer.")
        self.updateButtons()

    def onTestConnection(self):
        """Show the server's answer for the URL and token (who, devices, usage), or what went wrong; asked in the
        job thread, so the GUI does not wait for it."""
        self.saveServerSettings()
        self.ui.connectionLabel.text = "Connecting..."

        def done(job):
            self.job = None
            text = job.result if job.state == "done" else f"Error: {job.error}"
            self.ui.connectionLabel.text = text
            self.setStatus(text)
            self.updateButtons()
        self.run(lambda logic, progress, _: logic.start_test_connection(done))

    # --- running jobs ---------------------------------------------------------------------------------------------
    def run(self, start, local=False):
        """Call ``start(logic, on_progress, on_done)`` with the active logic (the local one when ``local``),
        reporting errors in the status label."""
        try:
            logic = self.logic if local else self.activeLogic()
            self.job = start(logic, self.onProgress, self.onDone)
        except Exception as exc:
            self.setStatus(f"Error: {exc}")
            return
        self.jobLogic = logic
        self.ui.progressBar.setValue(0)
        self.setStatus("Running...")
        self.timer.start()
        self.updateButtons()

    def onAdapt(self):
        self.saveSettings()
        volume, segmentation, segment_id = self.target()
        positive, negative, roi = self.prompts()
        self.run(lambda logic, progress, done: logic.start_adapt(volume, segmentation, segment_id, self.parameters(),
                                                                 positive, negative, roi, progress, done))

    def onApplyAdapter(self):
        volume, segmentation, segment_id = self.target()
        positive, negative, roi = self.prompts()
        self.run(lambda logic, progress, done: logic.start_apply(volume, segmentation, segment_id, positive, negative,
                                                                 roi, progress, done))

    def onPropagate(self):
        volume, segmentation, segment_id = self.target()
        index = self.interactive_index
        self.run(lambda logic, progress, done: logic.start_propagate(volume, segmentation, segment_id, index,
                                                                     device=self.ui.deviceComboBox.currentText,
                                                                     on_progress=progress, on_done=done))

    def onCancel(self):
        if self.job is not None:
            self.job.cancel()
            self.onPoll()

    def onPoll(self):
        if self.jobLogic is None or not self.jobLogic.runner.poll():
            self.timer.stop()

    def onProgress(self, event):
        self.ui.progressBar.setValue(int(100 * event.step / max(1, event.total)))
        text = f"{event.stage} {event.step}/{event.total}"
        if event.loss is not None:
            text += f", loss {event.loss:.4f}"
        if event.eta_s is not None:
            text += f", about {event.eta_s:.0f} s left"
        self.setStatus(text)

    def onDone(self, job):
        self.job = None
        if job.state == "done":
            self.ui.progressBar.setValue(100)
            self.setStatus("Done: review the preview segment, then Accept or Reject.")
        elif job.state == "cancelled":
            self.setStatus("Cancelled; nothing was changed.")
        else:
            self.setStatus(f"Error: {job.error}")
        model = self.heldModel()
        self.ui.diceLabel.text = (", ".join(f"{v:.3f}" + (" (Grow from seeds)" if k in model.grown_labels else "")
                                            for k, v in model.validation_dice.items())
                                  if model is not None and model.validation_dice else "-")
        self.updateButtons()

    # --- preview, interactive, adapters ------------------------------------------------------------------------
    def onAccept(self):
        volume, segmentation, segment_id = self.target()
        self.guarded(lambda: self.activeLogic().accept(volume, segmentation, segment_id), "Accepted.")

    def onReject(self):
        _, segmentation, segment_id = self.target()
        self.guarded(lambda: self.activeLogic().reject(segmentation, segment_id), "Preview removed.")

    def onPromptNodeChanged(self, node=None):
        self.removeObservers(self.onPromptModified)
        for prompt in self.prompts():
            if prompt is not None:
                self.addObserver(prompt, slicer.vtkMRMLMarkupsNode.PointPositionDefinedEvent, self.onPromptModified)
                self.addObserver(prompt, slicer.vtkMRMLMarkupsNode.PointEndInteractionEvent, self.onPromptModified)

    def onPromptModified(self, caller=None, event=None):
        if not self.ui.livePreviewCheckBox.checked or self.job is not None:
            return
        volume, segmentation, segment_id = self.target()
        positive, negative, roi = self.prompts()

        def update():
            self.interactive_index = self.activeLogic().update_slice(
                volume, segmentation, segment_id, positive, negative, roi, device=self.ui.deviceComboBox.currentText)
        self.guarded(update, "Slice updated; Propagate extends it.")

    def onSaveAdapter(self):
        directory = qt.QFileDialog.getExistingDirectory(None, "Folder for the adapter (created inside)",
                                                        qt.QSettings().value(ADAPTER_FOLDER_SETTING, ""))
        if directory:
            qt.QSettings().setValue(ADAPTER_FOLDER_SETTING, directory)
            name = qt.QInputDialog.getText(None, "Adapter name", "Name:", qt.QLineEdit.Normal, "medadapt-adapter")
            if name:
                path = os.path.join(directory, name)
                self.guarded(lambda: self.activeLogic().save_adapter(path), f"Saved adapter to {path}.")

    def askFolderAndTaskName(self, segmentation, segment_id, title, setting, remember=False):
        """Ask for a folder (the dialog ``title`` opens at the QSettings value ``setting``, which keeps the choice
        when ``remember``), then for a task name (default: the segment's name): (folder, name), or None when the
        user cancels either."""
        folder = qt.QFileDialog.getExistingDirectory(None, title, qt.QSettings().value(setting, ""))
        if not folder:
            return None
        if remember:
            qt.QSettings().setValue(setting, folder)
        segment = segmentation.GetSegmentation().GetSegment(segment_id)
        name = qt.QInputDialog.getText(None, "Task name", "Task name:", qt.QLineEdit.Normal, segment.GetName())
        return (folder, name) if name else None

    def onAddToLineage(self):
        volume, segmentation, segment_id = self.target()
        chosen = self.askFolderAndTaskName(segmentation, segment_id,
                                           "Lineage folder (an empty folder starts a new lineage)",
                                           ADAPTER_FOLDER_SETTING)
        if chosen is None:
            return
        folder, name = chosen

        def done(job):
            self.onDone(job)
            if job.state == "done":
                from MedAdaptSlicerLib.settings import LINEAGES, PREFIX, remember_lineage
                settings = qt.QSettings()
                settings.setValue(PREFIX + LINEAGES, remember_lineage(settings.value(PREFIX + LINEAGES), folder))
                if self.ui.baseModelComboBox.findText(folder) < 0:
                    self.ui.baseModelComboBox.addItem(folder)
                task = job.result.record.tasks[-1]
                self.setStatus(f"Lineage {folder}: stage {task.stage} learned '{task.name}'; choose the folder as "
                               "base model to adapt from it.")
        self.run(lambda logic, progress, _: logic.start_add_to_lineage(
            folder, volume, segmentation, segment_id, name, device=self.ui.deviceComboBox.currentText,
            on_progress=progress, on_done=done), local=True)

    def onAddToCollection(self):
        volume, segmentation, segment_id = self.target()
        chosen = self.askFolderAndTaskName(segmentation, segment_id,
                                           "Collection folder (training data of a universal model)",
                                           COLLECTION_FOLDER_SETTING, remember=True)
        if chosen is None:
            return
        folder, name = chosen
        modality = qt.QInputDialog.getText(None, "Modality", "Modality (e.g. CT, MR, FLAIR):", qt.QLineEdit.Normal,
                                           "CT")
        if modality:
            self.guarded(lambda: self.logic.save_to_collection(folder, volume, segmentation, segment_id, name,
                                                               modality),
                         f"Added '{name}' ({modality}) to the collection {folder}; `medadapt universal train {folder}` "
                         "trains on it.")

    def onLoadAdapter(self):
        if self.isRemote():
            self.chooseServerAdapter()
            return
        directory = qt.QFileDialog.getExistingDirectory(None, "Adapter folder",
                                                        qt.QSettings().value(ADAPTER_FOLDER_SETTING, ""))
        if directory:
            qt.QSettings().setValue(ADAPTER_FOLDER_SETTING, os.path.dirname(directory))
            self.guarded(lambda: self.logic.load_adapter(directory, self.ui.deviceComboBox.currentText),
                         f"Loaded adapter {directory}.")

    def chooseServerAdapter(self):
        """Remote: hold one of the adapters the server keeps for this token (newest first) for Apply."""
        import time
        try:
            logic = self.activeLogic()
            adapters = logic.server_adapters()
        except Exception as exc:
            self.setStatus(f"Error: {exc}")
            return
        if not adapters:
            self.setStatus("The server keeps no adapter for this token yet: run Adapt with a trained method first.")
            return
        labels = [f"{a['id']}  {a.get('method', '?')}  "
                  f"{time.strftime('%Y-%m-%d %H:%M', time.localtime(float(a.get('created', 0))))}" for a in adapters]
        choice = qt.QInputDialog.getItem(None, "Server adapter", "Adapter kept on the server:", labels, 0, False)
        if choice:
            self.guarded(lambda: logic.use_adapter(choice.split()[0]),
                         f"Holding the server's adapter {choice.split()[0]}; Apply adapter uses it.")

    def onInstallDependencies(self):
        from MedAdaptSlicerLib import dependencies
        with slicer.util.tryWithErrorDisplay("MedAdapt could not install its dependencies.", waitCursor=True):
            if not dependencies.torch_available():
                raise RuntimeError("PyTorch is missing: install the PyTorch extension from the Extensions Manager")
            installed = dependencies.install()
            self.updateButtons()
            self.setStatus((f"Installed: {', '.join(installed)}. " if installed else "All dependencies present. ")
                           + "MedAdapt is ready; no restart needed.")

    # --- universal model ------------------------------------------------------------------------------------------
    def checkedTasks(self):
        """Names of the universal model's tasks that are checked in the list."""
        listing = self.ui.universalTasksListWidget
        items = [listing.item(n) for n in range(listing.count)]
        return [item.text() for item in items if item.checkState() == qt.Qt.Checked]

    def onUniversalModelChanged(self, *unused):
        """List the chosen universal model's tasks, all checked, and its modalities (errors go to the status
        label)."""
        self.ui.universalTasksListWidget.clear()
        self.ui.universalModalityComboBox.clear()
        self.ui.universalModalityComboBox.addItem(AUTOMATIC_MODALITY)
        folder = self.ui.universalModelPathLineEdit.currentPath
        try:
            tasks = self.logic.universal_tasks(folder) if folder else []
            self.ui.universalModalityComboBox.addItems(self.logic.universal_modalities(folder) if folder else [])
        except Exception as exc:
            tasks = []
            self.setStatus(f"Error: {exc}")
        for name in tasks:
            item = qt.QListWidgetItem(name, self.ui.universalTasksListWidget)
            item.setFlags(item.flags() | qt.Qt.ItemIsUserCheckable)
            item.setCheckState(qt.Qt.Checked)
        if tasks:
            self.setStatus("Check the tasks to segment, then press Segment tasks.")
        self.updateButtons()

    def onUniversalSegment(self):
        volume, segmentation, _ = self.target()
        folder, tasks = self.ui.universalModelPathLineEdit.currentPath, self.checkedTasks()
        modality = self.ui.universalModalityComboBox.currentText
        modality = None if modality in ("", AUTOMATIC_MODALITY) else modality

        def done(job):
            self.onDone(job)
            if job.state == "done":
                self.setStatus(f"Added a segment for each of {', '.join(tasks)}, named after the task; existing "
                               "segments are unchanged.")
        self.run(lambda logic, progress, _: logic.start_universal_segment(
            folder, volume, segmentation, tasks, modality, device=self.ui.deviceComboBox.currentText,
            on_progress=progress, on_done=done), local=True)

    def guarded(self, action, success):
        """Run a quick main-thread action and report its outcome in the status label."""
        try:
            action()
        except Exception as exc:
            self.setStatus(f"Error: {exc}")
            return
        self.setStatus(success)
        self.updateButtons()

    def workButtons(self):
        """Every button that needs the dependencies installed."""
        return (self.ui.adaptButton, self.ui.cancelButton, self.ui.acceptButton, self.ui.rejectButton,
                self.ui.propagateButton, self.ui.saveAdapterButton, self.ui.loadAdapterButton,
                self.ui.applyAdapterButton, self.ui.addToLineageButton, self.ui.addToCollectionButton,
                self.ui.universalSegmentButton)

    def setStatus(self, text):
        self.ui.statusLabel.text = text

    def updateButtons(self, *unused):
        """Local mode needs the dependencies installed; Remote mode none (the lineage, collection and universal
        model buttons are Local only)."""
        from MedAdaptSlicerLib.dependencies import missing_packages
        remote = self.isRemote()
        missing = [] if remote else missing_packages()
        self.ui.installDependenciesButton.enabled = self.job is None
        self.ui.testConnectionButton.enabled = remote and self.job is None
        if missing:
            for button in self.workButtons():
                button.enabled = False
            self.setStatus("Press Install dependencies (Adapters) first: missing " + ", ".join(missing) + ".")
            return
        running = self.job is not None
        volume, segmentation, segment_id = self.target()
        preview = False
        if segmentation is not None and segment_id:
            from MedAdaptSlicerLib.results import preview_segment_id
            preview = preview_segment_id(segmentation, segment_id) is not None
        ready = volume is not None and segmentation is not None and bool(segment_id)
        self.ui.adaptButton.enabled = ready and not running
        self.ui.cancelButton.enabled = running
        self.ui.acceptButton.enabled = preview and not running
        self.ui.rejectButton.enabled = preview and not running
        self.ui.propagateButton.enabled = preview and not running and self.interactive_index is not None
        model = self.heldModel()
        savable = False
        if model is not None and remote:
            savable = model.adapter_id is not None
        elif model is not None:
            from MedAdaptSlicerLib.logic import SAVABLE_METHODS
            savable = model.config.method in SAVABLE_METHODS
        self.ui.saveAdapterButton.enabled = not running and savable
        self.ui.loadAdapterButton.enabled = not running
        self.ui.applyAdapterButton.enabled = ready and not running and model is not None
        self.ui.addToLineageButton.enabled = ready and not running and not preview and not remote
        self.ui.addToCollectionButton.enabled = ready and not running and not preview and not remote
        self.ui.universalSegmentButton.enabled = (volume is not None and segmentation is not None and not running
                                                  and bool(self.checkedTasks()) and not remote)


class MedAdaptSlicerLogic(ScriptedLoadableModuleLogic):
    """Slicer logic object delegating to :class:`MedAdaptSlicerLib.logic.MedAdaptLogic`, which (with torch and
    the core) is imported at the first use, not when the module loads."""

    def __init__(self, runner=None):
        ScriptedLoadableModuleLogic.__init__(self)
        self._runner, self._impl = runner, None

    def __getattr__(self, name):
        if self.__dict__.get("_impl") is None:
            from MedAdaptSlicerLib.logic import MedAdaptLogic
            self.__dict__["_impl"] = MedAdaptLogic(self.__dict__.get("_runner"))
        return getattr(self.__dict__["_impl"], name)

    @property
    def started(self):
        """Whether the implementation (and so torch) has been loaded."""
        return self.__dict__.get("_impl") is not None


class MedAdaptSlicerTest(ScriptedLoadableModuleTest):
    """Golden workflow in a running Slicer: paint the contrast-filled vessels and heart chambers of the CTACardio
    sample on two slices, adapt, check, accept."""

    def setUp(self):
        slicer.mrmlScene.Clear(0)

    def runTest(self):
        self.setUp()
        self.test_golden_workflow()

    def test_golden_workflow(self):
        import numpy as np
        import SampleData
        from MedAdaptSlicerLib.conversion import segment_array, write_segment_array
        from MedAdaptSlicerLib.jobs import SynchronousRunner
        from MedAdaptSlicerLib.parameters import Parameters
        from MedAdaptSlicerLib.results import preview_name

        self.delayDisplay("Loading sample CT")
        volume = SampleData.downloadSample("CTACardio")
        array = slicer.util.arrayFromVolume(volume)
        reference = (array > 150) & (array < 400)  # contrast-filled vessels and heart chambers
        slices = [s for s in range(array.shape[0]) if reference[s].sum() > 500]
        painted = np.zeros(array.shape, np.uint8)
        first, last = slices[len(slices) // 3], slices[2 * len(slices) // 3]
        painted[[first, last]] = reference[[first, last]]
        segmentation = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode")
        segmentation.CreateDefaultDisplayNodes()
        segmentation.SetReferenceImageGeometryParameterFromVolumeNode(volume)
        segment_id = segmentation.GetSegmentation().AddEmptySegment("contrast", "contrast")
        write_segment_array(segmentation, segment_id, volume, painted)

        self.delayDisplay("Adapting (zero-shot)")
        logic = MedAdaptSlicerLogic(SynchronousRunner())
        job = logic.start_adapt(volume, segmentation, segment_id, Parameters(method="zero-shot"))
        self.assertEqual(job.state, "done", str(job.error))
        preview_id = segmentation.GetSegmentation().GetSegmentIdBySegmentName(preview_name("contrast"))
        self.assertTrue(segment_array(segmentation, preview_id, volume)[first:last + 1].any())
        logic.accept(volume, segmentation, segment_id)
        self.assertEqual(segmentation.GetSegmentation().GetNumberOfSegments(), 1)
        self.delayDisplay("Test passed")
