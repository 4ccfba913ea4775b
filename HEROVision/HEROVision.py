"""HEROVision scripted module: the Slicer face of HEROVisionLib.

The Widget binds the panel to the parameter node and calls the Logic; the Logic delegates all
work to HEROVisionLib (no computation lives here), so everything it does is also available from
Slicer's Python console and, without Slicer, from the ``herovision`` command line.
"""

import importlib.util
import pathlib
from typing import Annotated

import qt
import vtk
import slicer
from slicer.parameterNodeWrapper import Choice, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

INTENDED_USE = (
    "Research use only. The bundled models are demonstration models trained on a synthetic "
    "phantom cohort; they are not for clinical use. Retrain on your own validated cohort "
    "before drawing any conclusion."
)


#: Where the Predict panel's requirements are listed (installed with consent on the first Predict).
REQUIREMENTS = pathlib.Path(__file__).parent / "Resources" / "requirements.txt"
MODALITIES = ("ivim", "t2wi", "dwi", "us", "ceus")  # HEROVisionLib.io.case.MODALITIES: this file loads before
#                                                    the library's dependencies are installed
MR_MODALITIES = ("t2wi", "ivim", "dwi")  # one MR study: a VOI drawn on one is carried to the others


class HEROVision(ScriptedLoadableModule):
    """Module description shown in Slicer's module list and help panel."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "HEROVision"
        self.parent.categories = ["Quantification"]
        self.parent.dependencies = []
        self.parent.contributors = ["HEROVision developers"]
        self.parent.helpText = (
            "IVIM parametric maps, early-recurrence probability, progression-free-survival risk under "
            "thermal ablation and surgical resection, a treatment recommendation and attention maps for "
            "hepatocellular carcinoma, from MRI (IVIM, T2WI, DWI) and ultrasound (US, CEUS).<br><br>"
            f"<b>{INTENDED_USE}</b>"
        )
        self.parent.acknowledgementText = (
            "Implements the HEROVision models (Nature Communications 2025: multimodal deep learning for "
            "progression-free survival of recurrent hepatocellular carcinoma after thermal ablation or "
            "repeat resection) and the IVIM vision-transformer model (Journal of Hepatocellular "
            "Carcinoma 2026: early recurrence after hepatectomy from intravoxel incoherent motion MRI)."
        )
        slicer.app.connect("startupCompleted()", registerSampleData)


def registerSampleData():
    """A phantom case in Sample Data: one click loads a complete case with its tumour segments."""
    import SampleData

    SampleData.SampleDataLogic.registerCustomSampleDataSource(
        category="HEROVision", sampleName="HEROVisionPhantomCase",
        thumbnailFileName=str(pathlib.Path(__file__).parent / "Resources" / "Icons" / "HEROVision.png"),
        customDownloader=lambda source=None: HEROVisionLogic().loadPhantomCase())


@parameterNodeWrapper
class HEROVisionParameterNode:
    """The panel's state, saved with the scene.

    ivimSequence - IVIM as one volume sequence (else the checked b-value volumes, kept by the widget).
    bvaluesText - b-values typed by the user, used when the volumes carry none.
    t2wi, dwi, us - the other MR and ultrasound volumes; ceusSequence or ceusArterial/Portal/Late - CEUS.
    segmentation - the segmentation holding the tumour VOI; segment ids per modality in *Segment.
    carryFrom - the MR series whose VOI "Carry" copies onto the other MR series.
    clinicalText - clinical values the nomograms need, as NAME=VALUE pairs.
    modelsFolder - the user's model packages (empty: the bundled demonstration models).
    plannedTreatment - the treatment the recommendation is read against.
    device - where the networks run.
    caseFolder - a case folder in the HEROVision layout (see README) to inspect or load.
    cohortFolder - the training cohort *Add to cohort* writes into (made if new).
    cohortCaseId - the case id to add under (empty: the patient's name).
    outcomeText - the outcome values of the added case, as NAME=VALUE pairs.
    replaceCase - whether *Add to cohort* may replace a case of the same id.
    cohortOutput - the folder a cohort run writes its predictions into.
    """

    ivimSequence: slicer.vtkMRMLSequenceNode
    bvaluesText: str
    t2wi: slicer.vtkMRMLScalarVolumeNode
    dwi: slicer.vtkMRMLScalarVolumeNode
    us: slicer.vtkMRMLScalarVolumeNode
    ceusSequence: slicer.vtkMRMLSequenceNode
    ceusArterial: slicer.vtkMRMLScalarVolumeNode
    ceusPortal: slicer.vtkMRMLScalarVolumeNode
    ceusLate: slicer.vtkMRMLScalarVolumeNode
    segmentation: slicer.vtkMRMLSegmentationNode
    ivimSegment: str
    t2wiSegment: str
    dwiSegment: str
    usSegment: str
    ceusSegment: str
    carryFrom: Annotated[str, Choice(["t2wi", "ivim", "dwi"])] = "t2wi"
    clinicalText: str
    modelsFolder: pathlib.Path
    plannedTreatment: Annotated[str, Choice(["undecided", "TA", "SR"])] = "undecided"
    device: Annotated[str, Choice(["auto", "cpu", "cuda"])] = "auto"
    caseFolder: pathlib.Path
    cohortFolder: pathlib.Path
    cohortCaseId: str
    outcomeText: str
    replaceCase: bool = False
    cohortOutput: pathlib.Path


class HEROVisionWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """Binds HEROVision.ui to the parameter node; every action is a Logic call. The problems a
    prediction would meet are listed as the inputs change, and Predict is enabled only without them."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._running = None
        self._observedSegmentation = None

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/HEROVision.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = HEROVisionLogic()
        self.ui.segmentEditorWidget.setMRMLSegmentEditorNode(self.logic.segmentEditorNode())
        self._checkTimer = self._singleShotTimer(400, self.updateChecks)
        self._pollTimer = qt.QTimer()
        self._pollTimer.setInterval(100)
        self._pollTimer.connect("timeout()", self.onPoll)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.ui.ivimVolumesSelector.connect("checkedNodesChanged()", self._checkTimer.start)
        for modality in MODALITIES:
            selector = getattr(self.ui, f"{modality}SegmentSelector")
            selector.connect("currentSegmentChanged(QString)", lambda segmentId, m=modality: self.onSegmentChosen(m, segmentId))
        self.ui.segmentationSelector.connect("currentNodeChanged(vtkMRMLNode*)", self.onSegmentationChanged)
        self.ui.carrySegmentButton.connect("clicked(bool)", self.onCarrySegment)
        self.ui.predictButton.connect("clicked(bool)", self.onPredict)
        self.ui.cancelButton.connect("clicked(bool)", self.onCancel)
        self.ui.inspectButton.connect("clicked(bool)", self.onInspectButton)
        self.ui.loadCaseButton.connect("clicked(bool)", self.onLoadCase)
        self.ui.reportButton.connect("clicked(bool)", self.onReport)
        self.ui.exportDicomButton.connect("clicked(bool)", self.onExportDicom)
        self.ui.addToCohortButton.connect("clicked(bool)", self.onAddToCohort)
        self.ui.runCohortButton.connect("clicked(bool)", self.onRunCohort)
        self.ui.cancelCohortButton.connect("clicked(bool)", self.onCancelCohort)
        self._cohortTimer = qt.QTimer()
        self._cohortTimer.setInterval(250)
        self._cohortTimer.connect("timeout()", self.onCohortPoll)
        self._cohortRun = None
        self.ui.modelsFolderPathLineEdit.connect("currentPathChanged(QString)", lambda _: self.updateModels())
        self.initializeParameterNode()
        self.updateModels()

    @staticmethod
    def _singleShotTimer(milliseconds, callback):
        """Coalesces bursts of edits (drawing, typing) into one update."""
        timer = qt.QTimer()
        timer.setSingleShot(True)
        timer.setInterval(milliseconds)
        timer.connect("timeout()", callback)
        return timer

    def cleanup(self) -> None:
        self.removeObservers()
        if self._running:
            self._running.cancel()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        self.ui.segmentEditorWidget.setActiveEffect(None)  # leave no editing effect active outside the module
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode.parameterNode, vtk.vtkCommand.ModifiedEvent, self.onParameterChanged)

    def onSceneStartClose(self, caller, event) -> None:
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())

    def setParameterNode(self, inputParameterNode) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode.parameterNode, vtk.vtkCommand.ModifiedEvent, self.onParameterChanged)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode.parameterNode, vtk.vtkCommand.ModifiedEvent, self.onParameterChanged)
            self.onSegmentationChanged(self._parameterNode.segmentation)
            self._checkTimer.start()

    def onParameterChanged(self, caller=None, event=None) -> None:
        self._checkTimer.start()

    def onSegmentationChanged(self, segmentation) -> None:
        """Point the embedded Segment Editor and the segment selectors at the chosen segmentation,
        and watch it so VOI size and problems follow the drawing."""
        if self._observedSegmentation:
            self.removeObserver(self._observedSegmentation, vtk.vtkCommand.ModifiedEvent, self.onParameterChanged)
        self._observedSegmentation = segmentation
        self.ui.segmentEditorWidget.setSegmentationNode(segmentation)
        for modality in MODALITIES:
            selector = getattr(self.ui, f"{modality}SegmentSelector")
            selector.setCurrentNode(segmentation)
            if self._parameterNode and segmentation:
                selector.setCurrentSegmentID(getattr(self._parameterNode, f"{modality}Segment"))
        if segmentation:
            self.addObserver(segmentation, vtk.vtkCommand.ModifiedEvent, self.onParameterChanged)
            if self._parameterNode and (self._parameterNode.t2wi or self.ivimVolumes()):
                self.ui.segmentEditorWidget.setSourceVolumeNode(self._parameterNode.t2wi or self.ivimVolumes()[0])

    def onSegmentChosen(self, modality, segmentId) -> None:
        if self._parameterNode:
            setattr(self._parameterNode, f"{modality}Segment", segmentId or "")

    def ivimVolumes(self) -> list:
        return list(self.ui.ivimVolumesSelector.checkedNodes())

    def sceneInputs(self):
        return self.logic.sceneInputs(self._parameterNode, self.ivimVolumes())

    def updateModels(self) -> None:
        with slicer.util.tryWithErrorDisplay("Cannot read the model packages."):
            lines, covariates = self.logic.describeModels(self._modelsFolder())
            self.ui.modelsText.setPlainText("\n".join(lines))
            self.ui.clinicalNeededLabel.setText(
                f"The nomograms need: {', '.join(covariates)}" if covariates else "These models use no clinical values.")

    def _modelsFolder(self):
        return self._chosenFolder("modelsFolder")

    def _chosenFolder(self, name: str):
        """The folder parameter ``name``, or None when none was chosen (an empty path reads as '.')."""
        folder = getattr(self._parameterNode, name) if self._parameterNode else None
        return folder if folder and str(folder) not in ("", ".") else None

    def _requiredFolder(self, name: str, what: str):
        from HEROVisionLib.errors import InputError

        folder = self._chosenFolder(name)
        if folder is None:
            raise InputError(what, "choose a folder first")
        return folder

    def updateChecks(self) -> None:
        """List what would stop a prediction, show the VOI's size, enable Predict when all is well."""
        if not self._parameterNode or self._running:
            return
        try:
            inputs = self.sceneInputs()
            problems = self.logic.inputProblems(inputs)
        except Exception as error:  # a problem reading the inputs is itself a problem to show
            problems = [str(error)]
            inputs = None
        self.ui.problemsLabel.setText("\n".join(f"• {p}" for p in problems) or "Ready.")
        self.ui.predictButton.setEnabled(not problems)
        self.ui.voiSizeLabel.setText(self.logic.voiSizeText(inputs) if inputs else "—")

    def onCarrySegment(self) -> None:
        with slicer.util.tryWithErrorDisplay("Cannot carry the VOI.", waitCursor=True):
            carried = self.logic.carrySegment(self._parameterNode, self.ivimVolumes())
            self.onSegmentationChanged(self._parameterNode.segmentation)
            slicer.util.showStatusMessage(f"VOI carried to {', '.join(carried)}: check it on each series", 5000)

    def onPredict(self) -> None:
        with slicer.util.tryWithErrorDisplay("Prediction failed to start.", waitCursor=True):
            if not self.logic.ensureDependencies():
                return
            self._inputs = self.sceneInputs()
            self._running = self.logic.startPrediction(self._inputs, self._modelsFolder(), self._parameterNode.device,
                                                       self._plannedTreatment())
            self.ui.predictButton.setEnabled(False)
            self.ui.cancelButton.setEnabled(True)
            self.ui.progressBar.setVisible(True)
            self.ui.resultSummaryLabel.setText("")
            self._pollTimer.start()

    def onCancel(self) -> None:
        if self._running:
            self._running.cancel()
            self.ui.problemsLabel.setText("Cancelling at the end of the current step …")

    def onPoll(self) -> None:
        running = self._running
        self.ui.progressBar.setValue(int(100 * running.fraction))
        self.ui.progressBar.setFormat(f"{running.stage} %p%")
        if not running.done():
            return
        self._pollTimer.stop()
        self._running = None
        self.ui.cancelButton.setEnabled(False)
        self.ui.progressBar.setVisible(False)
        from HEROVisionLib.errors import Cancelled

        try:
            summary, nodes = self.logic.finishPrediction(running, self._inputs, self._plannedTreatment())
            self.ui.resultSummaryLabel.setText(summary)
            self.ui.reportButton.setEnabled(True)
            self.ui.exportDicomButton.setEnabled(True)
            self.logic.showOverlay(nodes, self._inputs)
        except Cancelled:
            self.ui.resultSummaryLabel.setText("Prediction cancelled; the scene is as it was.")
        except Exception as error:
            slicer.util.errorDisplay(f"Prediction failed; the scene is as it was.\n\n{error}")
        self.updateChecks()

    def onReport(self) -> None:
        path = qt.QFileDialog.getSaveFileName(self.parent, "Save the patient report", "", "PDF (*.pdf);;PNG (*.png)")
        if not path:
            return
        with slicer.util.tryWithErrorDisplay("Cannot write the report.", waitCursor=True):
            written = self.logic.writeReport(path, self._plannedTreatment(), self._modelsFolder())
            slicer.util.showStatusMessage(f"Report written to {written}", 5000)

    def onAddToCohort(self) -> None:
        with slicer.util.tryWithErrorDisplay("The case was not added to the cohort.", waitCursor=True):
            inputs = self.sceneInputs()
            if self._parameterNode.cohortCaseId:
                inputs.case_id = self._parameterNode.cohortCaseId.strip()
            folder = self.logic.addToCohort(inputs, self._requiredFolder("cohortFolder", "Cohort folder"),
                                            self._parameterNode.outcomeText, self._parameterNode.replaceCase)
            self.ui.cohortStatusLabel.setText(f"Case {inputs.case_id} written to {folder} and added to cohort.csv")

    def onRunCohort(self) -> None:
        with slicer.util.tryWithErrorDisplay("The cohort run did not start.", waitCursor=True):
            if not self.logic.ensureDependencies():
                return
            self._cohortRun = self.logic.startCohort(self._requiredFolder("cohortFolder", "Cohort folder"),
                                                     self._requiredFolder("cohortOutput", "Predictions to"),
                                                     resume=True, modelsFolder=self._modelsFolder(),
                                                     device=self._parameterNode.device)
            self.ui.runCohortButton.setEnabled(False)
            self.ui.cancelCohortButton.setEnabled(True)
            self.ui.cohortProgressBar.setVisible(True)
            self._cohortTimer.start()

    def onCancelCohort(self) -> None:
        if self._cohortRun:
            self._cohortRun.cancel()
            self.ui.cohortStatusLabel.setText("Cancelling after the current case …")

    def onCohortPoll(self) -> None:
        run = self._cohortRun
        self.ui.cohortProgressBar.setValue(int(100 * run.fraction))
        self.ui.cohortProgressBar.setFormat(f"{run.done_cases} / {run.total or '?'} cases %p%")
        if not run.done():
            return
        self._cohortTimer.stop()
        self._cohortRun = None
        self.ui.runCohortButton.setEnabled(True)
        self.ui.cancelCohortButton.setEnabled(False)
        self.ui.cohortProgressBar.setVisible(False)
        from HEROVisionLib.errors import Cancelled

        try:
            table = run.result()
            failed = int((table["status"] != "ok").sum()) if len(table) else 0
            self.ui.cohortStatusLabel.setText(f"{len(table) - failed} case(s) predicted, {failed} failed; "
                                              f"table: {self._parameterNode.cohortOutput / 'results.csv'}")
        except Cancelled as cancelled:
            self.ui.cohortStatusLabel.setText(str(cancelled))
        except Exception as error:
            slicer.util.errorDisplay(f"The cohort run failed.\n\n{error}")

    def onExportDicom(self) -> None:
        folder = qt.QFileDialog.getExistingDirectory(self.parent, "Folder to create for the DICOM objects")
        if not folder:
            return
        with slicer.util.tryWithErrorDisplay("Cannot export the prediction as DICOM.", waitCursor=True):
            out = pathlib.Path(folder) / f"{self._inputs.case_id}-herovision-dicom"
            written = self.logic.exportDicom(out)
            slicer.util.showStatusMessage(f"{len(written)} DICOM objects written to {out}", 5000)

    def _plannedTreatment(self):
        planned = self._parameterNode.plannedTreatment
        return None if planned == "undecided" else planned

    def onInspectButton(self) -> None:
        with slicer.util.tryWithErrorDisplay("Cannot read the case.", waitCursor=True):
            self.ui.summaryText.setPlainText(self.logic.inspectCase(self._parameterNode.caseFolder))

    def onLoadCase(self) -> None:
        with slicer.util.tryWithErrorDisplay("Cannot load the case.", waitCursor=True):
            inputs = self.logic.loadCase(self._parameterNode.caseFolder)
            selector = self.ui.ivimVolumesSelector
            for index in range(selector.nodeCount()):
                node = selector.nodeFromIndex(index)
                selector.setCheckState(node, qt.Qt.Checked if node in inputs.ivim_volumes else qt.Qt.Unchecked)


class HEROVisionLogic(ScriptedLoadableModuleLogic):
    """All the module's work, callable from the Python console; delegates to HEROVisionLib."""

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)

    def getParameterNode(self):
        return HEROVisionParameterNode(super().getParameterNode())

    def segmentEditorNode(self):
        """The module's own Segment Editor state (a singleton, so it survives reloading the module)."""
        node = slicer.mrmlScene.GetSingletonNode("HEROVision", "vtkMRMLSegmentEditorNode")
        if node is None:
            node = slicer.mrmlScene.CreateNodeByClass("vtkMRMLSegmentEditorNode")
            node.UnRegister(None)
            node.SetSingletonTag("HEROVision")
            node = slicer.mrmlScene.AddNode(node)
        return node

    def sceneInputs(self, parameters, ivimVolumes=()):
        """The ``HEROVisionLib.slicer.nodes.SceneInputs`` the panel's choices describe."""
        from HEROVisionLib.slicer.nodes import SceneInputs
        from HEROVisionLib.slicer.panel_inputs import (bvalues_from_nodes, ceus_phase_volumes_from_sequence, parse_bvalues,
                                               sequence_bvalues, sequence_volumes)

        fileForInstance = self.dicomFileForInstance()
        if parameters.ivimSequence:
            volumes = sequence_volumes(parameters.ivimSequence)
            bvalues = sequence_bvalues(parameters.ivimSequence, fileForInstance)
        else:
            volumes, bvalues = list(ivimVolumes), bvalues_from_nodes(ivimVolumes, fileForInstance)
        if volumes and bvalues is None:
            bvalues = parse_bvalues(parameters.bvaluesText or "", "b-values (s/mm²)")
        if parameters.ceusSequence:
            ceus = ceus_phase_volumes_from_sequence(parameters.ceusSequence)
        else:
            ceus = [n for n in (parameters.ceusArterial, parameters.ceusPortal, parameters.ceusLate) if n]
        segments = {m: getattr(parameters, f"{m}Segment") for m in MODALITIES if getattr(parameters, f"{m}Segment")}
        from HEROVisionLib.io.case import parse_clinical_values

        return SceneInputs(self.caseId(parameters.segmentation), parameters.segmentation, segments, volumes,
                           list(bvalues or []), {"t2wi": parameters.t2wi, "dwi": parameters.dwi, "us": parameters.us},
                           ceus, parse_clinical_values(parameters.clinicalText or "", "Clinical values"))

    @staticmethod
    def dicomFileForInstance():
        """Slicer's DICOM database lookup (SOP Instance UID → file), or None without an open database."""
        database = getattr(slicer, "dicomDatabase", None)
        return database.fileForInstance if database is not None and database.isOpen else None

    @staticmethod
    def caseId(node) -> str:
        """The patient's name in the subject hierarchy, else the node's name."""
        if node is None:
            return "case"
        hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(slicer.mrmlScene)
        item = hierarchy.GetItemByDataNode(node)
        while item and item != hierarchy.GetSceneItemID():
            if hierarchy.GetItemLevel(item) == "Patient":
                return hierarchy.GetItemName(item)
            item = hierarchy.GetItemParent(item)
        return node.GetName()

    def inputProblems(self, inputs) -> list:
        from HEROVisionLib.slicer.panel_inputs import input_problems

        return input_problems(slicer.mrmlScene, inputs)

    def voiSizeText(self, inputs) -> str:
        """Largest axial diameter and volume of each chosen VOI, as drawn."""
        from HEROVisionLib.slicer.panel_inputs import segment_measures

        parts = []
        for modality, segmentId in inputs.segments.items():
            node = inputs.reference_node(modality)
            if node is None:
                continue
            try:
                size, volume = segment_measures(slicer.mrmlScene, inputs.segmentation, segmentId, node)
                parts.append(f"{modality.upper()} {size:.1f} cm, {volume:.1f} ml")
            except Exception:
                parts.append(f"{modality.upper()} —")
        return "; ".join(parts) or "—"

    def carrySegment(self, parameters, ivimVolumes=()) -> list:
        """Carry the VOI of the MR series ``parameters.carryFrom`` onto the other MR series' grids as new
        segments and choose them; returns the series it went to."""
        from HEROVisionLib.errors import InputError
        from HEROVisionLib.slicer.panel_inputs import carry_segment

        inputs = self.sceneInputs(parameters, ivimVolumes)
        source, segmentId = parameters.carryFrom, inputs.segments.get(parameters.carryFrom)
        sourceNode = inputs.reference_node(source)
        if not (parameters.segmentation and segmentId and sourceNode):
            raise InputError(source.upper(), "choose that series and its tumour segment first")
        carried = []
        for modality in MR_MODALITIES:
            target = inputs.reference_node(modality)
            if modality == source or target is None:
                continue
            newId = carry_segment(slicer.mrmlScene, parameters.segmentation, segmentId, sourceNode, target,
                                  f"tumour from {source.upper()} on {modality.upper()}")
            setattr(parameters, f"{modality}Segment", newId)
            carried.append(modality.upper())
        return carried

    def describeModels(self, modelsFolder=None) -> tuple:
        """Lines describing each package, and the clinical values their nomograms need."""
        from HEROVisionLib.predict import load_models

        models = load_models(modelsFolder, "cpu")
        return models.describe(), models.nomogram_covariates()

    def ensureDependencies(self, ask=True) -> bool:
        """Install what Predict needs, with the user's consent: torch through the PyTorch extension
        (a build matching the GPU), the rest with Slicer's pip. Returns whether all is present."""
        try:
            from HEROVisionLib.slicer.dependencies import missing_requirements, read_requirements

            missing = missing_requirements(read_requirements(REQUIREMENTS))
        except ImportError:  # packaging itself is missing
            missing = ["packaging"]
        if importlib.util.find_spec("torch") is None:
            missing.insert(0, "torch")
        if not missing:
            return True
        if ask and not slicer.util.confirmOkCancelDisplay(
                "HEROVision needs these Python packages, which will be downloaded and installed now "
                f"(a few minutes, several GB for torch):\n\n{', '.join(missing)}", "Install dependencies"):
            return False
        try:
            if "torch" in missing:
                import PyTorchUtils

                if PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=False, torchVersionRequirement=">=2.3") is None:
                    raise RuntimeError("the PyTorch extension could not install torch")
                missing.remove("torch")
            if missing:
                slicer.util.pip_install(missing)
        except ModuleNotFoundError:
            slicer.util.errorDisplay("torch is missing: install the PyTorch extension from the Extensions Manager, "
                                     "restart Slicer and press Predict again.")
            return False
        except Exception as error:
            slicer.util.errorDisplay(
                "Installing the dependencies failed — is this computer offline? Install them from a connected "
                f"machine or with pip in Slicer's Python console:\n  slicer.util.pip_install({missing!r})\n\n{error}")
            return False
        return True

    def startPrediction(self, inputs, modelsFolder=None, device="auto", plannedTreatment=None, adviceDraws=32):
        """Read the case from the nodes (here, on Slicer's thread) and predict it, with the treatment
        advice against ``plannedTreatment``, on a worker thread; returns a
        ``HEROVisionLib.predict.BackgroundPrediction`` to poll or cancel."""
        from HEROVisionLib.slicer.nodes import case_from_scene
        from HEROVisionLib.predict import BackgroundPrediction, load_models
        from HEROVisionLib.clinical.treatment import advise

        def advice(case, result):
            if adviceDraws and {"ta", "sr"} <= set(result.survival):
                return advise(case, result, models, plannedTreatment, draws=adviceDraws).to_dict()
            return None

        case = case_from_scene(slicer.mrmlScene, inputs)
        models = load_models(modelsFolder, device)
        return BackgroundPrediction(case, models, device, then=advice)

    def finishPrediction(self, running, inputs, plannedTreatment=None):
        """Add a finished prediction's tables, maps and overlays to the scene; returns (summary, nodes):
        the summary leads with the probability of benefit. The prediction and its advice are kept for
        :meth:`writeReport` and :meth:`exportDicom`."""
        from HEROVisionLib.slicer.nodes import add_result_to_scene
        from HEROVisionLib.clinical.treatment import summary_line

        result = running.result()
        nodes = add_result_to_scene(slicer.mrmlScene, result, inputs)
        self.lastPrediction, self.lastInputs = (result, running.case, running.models, running.follow_up), inputs
        return summary_line(result, plannedTreatment, running.follow_up), nodes

    def writeReport(self, path, plannedTreatment=None, modelsFolder=None):
        """The per-patient report (PDF or PNG) of the last prediction, with the recommendation's
        firmness from test-time augmentation."""
        from HEROVisionLib.errors import InputError
        from HEROVisionLib.clinical.report import write_report
        from HEROVisionLib.clinical.treatment import advise

        if not getattr(self, "lastPrediction", None):
            raise InputError("report", "predict a case first")
        result, case, models, advice = self.lastPrediction
        if (advice or {}).get("planned") != plannedTreatment and {"ta", "sr"} <= set(result.survival):
            advice = advise(case, result, models, plannedTreatment).to_dict()  # the plan changed since Predict
        return write_report(result.to_record(), advice, case, {**result.overlays, **result.maps}, path, modelsFolder)

    def exportDicom(self, outDir, inputs=None):
        """The last prediction as DICOM SEG, Parametric Maps and SR of the study its MR volumes were
        loaded from (Slicer's DICOM module), into the new folder ``outDir``; returns the files."""
        from HEROVisionLib.errors import InputError
        from HEROVisionLib.slicer.dicom_sources import export_scene_prediction

        if not getattr(self, "lastPrediction", None):
            raise InputError("DICOM export", "predict a case first")
        result, case, _, _ = self.lastPrediction
        fileForInstance = self.dicomFileForInstance()
        if fileForInstance is None:
            raise InputError("DICOM export", "Slicer's DICOM database is not open")
        return export_scene_prediction(result, case, inputs or self.lastInputs, fileForInstance, pathlib.Path(outDir))

    def showOverlay(self, nodes, inputs) -> None:
        """The TA attention map over T2WI (else the first overlay over its input), at partial opacity."""
        for name, modality in (("attention_ta_t2wi", "t2wi"), ("attention_er_maps", "ivim")):
            if name in nodes and inputs.reference_node(modality) is not None:
                slicer.util.setSliceViewerLayers(background=inputs.reference_node(modality), foreground=nodes[name],
                                                 foregroundOpacity=0.5, fit=True)
                return

    def processScene(self, inputs, modelsFolder=None, device="auto", plannedTreatment=None):
        """Predict the case held by the scene's nodes (a ``HEROVisionLib.slicer.nodes.SceneInputs``) and add
        the result tables, maps and attention overlays as new nodes; returns (result, nodes, summary)."""
        from HEROVisionLib.slicer.nodes import predict_scene
        from HEROVisionLib.predict import load_models
        from HEROVisionLib.clinical.treatment import summary_line

        result, nodes = predict_scene(slicer.mrmlScene, inputs, load_models(modelsFolder, device), device)
        return result, nodes, summary_line(result, plannedTreatment)

    def processCohort(self, cohortDir, outDir, shard="1/1", resume=False, modelsFolder=None, device="auto",
                      adviceDraws=32, onCase=None, cancel=None):
        """Predict every case of a cohort folder into ``outDir`` with its treatment advice (as
        ``herovision batch``); returns the table. ``onCase(done, total, caseId)`` hears of each
        finished case (default: a line on the console); setting ``cancel`` (a ``threading.Event``)
        stops the run between cases, keeping the finished ones (``resume=True`` goes on)."""
        from HEROVisionLib.predict import load_models, parse_shard, predict_cohort
        from HEROVisionLib.clinical.treatment import cohort_advice

        def printProgress(done, total, caseId):
            if caseId:
                print(f"{done}/{total} {caseId}")

        models = load_models(modelsFolder, device)
        onCase = onCase or printProgress
        return predict_cohort(cohortDir, models, outDir, shard=parse_shard(shard), resume=resume, device=device,
                              advice=cohort_advice(models, adviceDraws, device), progress=False, on_case=onCase,
                              cancel=cancel)

    def startCohort(self, cohortDir, outDir, resume=False, modelsFolder=None, device="auto", adviceDraws=32):
        """:meth:`processCohort` on a worker thread; returns a ``HEROVisionLib.predict.BackgroundCohort``
        to poll (``done_cases`` of ``total``) or cancel."""
        from HEROVisionLib.predict import BackgroundCohort, load_models
        from HEROVisionLib.clinical.treatment import cohort_advice

        models = load_models(modelsFolder, device)
        return BackgroundCohort(cohortDir, models, outDir, resume=resume, device=device,
                                advice=cohort_advice(models, adviceDraws, device))

    def addToCohort(self, inputs, cohortDir, outcomeText="", replace=False):
        """Write the scene's case (``inputs``, as Predict reads them) and the outcome values typed as
        NAME=VALUE pairs (treatment, pfs_months, pfs_event, er_2y) as one case of the training cohort
        ``cohortDir``, its row appended to cohort.csv; returns the case folder. The scene is not changed."""
        from HEROVisionLib.io.case import parse_clinical_values
        from HEROVisionLib.slicer.add_to_cohort import add_scene_to_cohort

        outcome = parse_clinical_values(outcomeText or "", "Outcome values")
        return add_scene_to_cohort(slicer.mrmlScene, inputs, pathlib.Path(cohortDir), outcome, replace=replace)

    def inspectCase(self, caseFolder) -> str:
        """Read every modality of a case folder with all input checks and describe it."""
        from HEROVisionLib.io.case import Case
        from HEROVisionLib.io.summary import summarise_case

        return "\n".join(summarise_case(Case(pathlib.Path(caseFolder))).lines())

    def loadCase(self, caseFolder, parameters=None):
        """Load a case folder as Slicer holds a case and choose its nodes in the panel; returns the
        ``SceneInputs``."""
        from HEROVisionLib.io.case import Case
        from HEROVisionLib.slicer.nodes import scene_inputs_from_case

        inputs = scene_inputs_from_case(slicer.mrmlScene, Case(pathlib.Path(caseFolder)))
        parameters = parameters or self.getParameterNode()
        parameters.segmentation = inputs.segmentation
        parameters.t2wi, parameters.dwi, parameters.us = (inputs.volumes.get(m) for m in ("t2wi", "dwi", "us"))
        phases = inputs.ceus_phase_volumes + [None] * (3 - len(inputs.ceus_phase_volumes))
        parameters.ceusArterial, parameters.ceusPortal, parameters.ceusLate = phases
        for modality in MODALITIES:
            setattr(parameters, f"{modality}Segment", inputs.segments.get(modality, ""))
        return inputs

    def loadPhantomCase(self, seed=1, index=1):
        """Generate a phantom case into the Slicer cache folder and load it (Sample Data's entry)."""
        from HEROVisionLib.phantom import generate_case, write_case

        folder = pathlib.Path(slicer.app.cachePath) / "HEROVision" / "phantom"
        caseFolder = folder / f"A{index:04d}"
        if not caseFolder.is_dir():  # the cache's phantom folder is claimed (and made) by write_case
            caseFolder = write_case(generate_case(seed=seed, index=index), folder)
        inputs = self.loadCase(caseFolder)
        return [*inputs.ivim_volumes, *inputs.volumes.values(), inputs.segmentation]


class HEROVisionTest(ScriptedLoadableModuleTest):
    """Runs in Slicer (Developer mode → Reload and Test): the pytest scenario on Slicer's own scene —
    load a phantom case into nodes, predict, check tables, overlays and untouched inputs, and a bad
    input refused without a node added."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_InspectPhantomCase()
        self.setUp()
        self.test_PredictPhantomCase()

    def _phantomCase(self, folder):
        from HEROVisionLib.phantom import generate_case, write_case

        return write_case(generate_case(seed=1, index=1), folder)

    def test_InspectPhantomCase(self):
        import tempfile

        self.delayDisplay("Generating a phantom case")
        with tempfile.TemporaryDirectory() as folder:
            text = HEROVisionLogic().inspectCase(self._phantomCase(folder))
        self.assertIn("case A0001", text)
        self.assertNotIn("unavailable", text)
        self.delayDisplay("Test passed")

    def test_PredictPhantomCase(self):
        import tempfile

        import numpy as np

        from HEROVisionLib.errors import InputError
        from HEROVisionLib.slicer.nodes import image_from_volume_node
        from HEROVisionLib.io.geometry import same_grid

        logic = HEROVisionLogic()
        with tempfile.TemporaryDirectory() as folder:
            self.delayDisplay("Loading a phantom case into the scene")
            parameters = logic.getParameterNode()
            inputs = logic.loadCase(self._phantomCase(folder), parameters)
        self.assertEqual(logic.inputProblems(inputs), [])
        watched = [*inputs.ivim_volumes, *inputs.volumes.values()]
        before = [(n.GetMTime(), slicer.util.arrayFromVolume(n).tobytes()) for n in watched]

        self.delayDisplay("Predicting")
        running = logic.startPrediction(logic.sceneInputs(parameters, inputs.ivim_volumes))
        while not running.done():
            slicer.app.processEvents()
        summary, nodes = logic.finishPrediction(running, inputs)
        self.assertIn("risk", summary)
        self.assertEqual([(n.GetMTime(), slicer.util.arrayFromVolume(n).tobytes()) for n in watched], before)
        table = nodes["results"].GetTable()
        self.assertEqual(table.GetColumnByName("inputs_used").GetValue(0), "ivim;t2wi;dwi;us;ceus")
        overlay = nodes["attention_ta_t2wi"]
        self.assertTrue(same_grid(image_from_volume_node(overlay), image_from_volume_node(inputs.volumes["t2wi"])))
        self.assertGreater(float(np.max(slicer.util.arrayFromVolume(overlay))), 0.0)

        self.delayDisplay("Writing the patient report")
        with tempfile.TemporaryDirectory() as folder:
            report = logic.writeReport(pathlib.Path(folder) / "report.pdf", "TA")
            self.assertGreater(report.stat().st_size, 50_000)

        self.delayDisplay("A b-value count mismatch is refused and adds no node")
        count = slicer.mrmlScene.GetNumberOfNodes()
        inputs.bvalues = inputs.bvalues[:-1]
        with self.assertRaises(InputError):
            logic.startPrediction(inputs)
        self.assertEqual(slicer.mrmlScene.GetNumberOfNodes(), count)
        self.delayDisplay("Test passed")
