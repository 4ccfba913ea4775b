"""HEROVision scripted module: the Slicer face of HEROVisionLib.

The Widget binds the panel to the parameter node and calls the Logic; the Logic delegates all
work to HEROVisionLib (no computation lives here), so everything it does is also available from
Slicer's Python console and, without Slicer, from the ``herovision`` command line.
"""

import pathlib

import slicer
from slicer.parameterNodeWrapper import parameterNodeWrapper
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


@parameterNodeWrapper
class HEROVisionParameterNode:
    """The panel's state, saved with the scene.

    caseFolder - a case folder in the HEROVision layout (see README) to check before prediction.
    """

    caseFolder: pathlib.Path


class HEROVisionWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """Binds HEROVision.ui to the parameter node; every action is a Logic call."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/HEROVision.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = HEROVisionLogic()
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.ui.inspectButton.connect("clicked(bool)", self.onInspectButton)
        self.initializeParameterNode()

    def cleanup(self) -> None:
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None

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
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)

    def onInspectButton(self) -> None:
        with slicer.util.tryWithErrorDisplay("Cannot read the case.", waitCursor=True):
            self.ui.summaryText.setPlainText(self.logic.inspectCase(self._parameterNode.caseFolder))


class HEROVisionLogic(ScriptedLoadableModuleLogic):
    """All the module's work, callable from the Python console; delegates to HEROVisionLib."""

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)

    def getParameterNode(self):
        return HEROVisionParameterNode(super().getParameterNode())

    def inspectCase(self, caseFolder) -> str:
        """Read every modality of a case folder with all input checks and describe it."""
        from HEROVisionLib.io.case import Case
        from HEROVisionLib.summary import summarise_case

        return "\n".join(summarise_case(Case(pathlib.Path(caseFolder))).lines())

    def processScene(self, inputs, modelsFolder=None, device="auto"):
        """Predict the case held by the scene's nodes (a ``HEROVisionLib.mrml.SceneInputs``) and add
        the result tables, maps and attention overlays as new nodes; returns (result, nodes)."""
        from HEROVisionLib.mrml import predict_scene
        from HEROVisionLib.predict import load_models

        return predict_scene(slicer.mrmlScene, inputs, load_models(modelsFolder, device), device)

    def processCohort(self, cohortDir, outDir, shard="1/1", resume=False, modelsFolder=None, device="auto"):
        """Predict every case of a cohort folder into ``outDir`` (as ``herovision batch``); returns the table."""
        from HEROVisionLib.predict import load_models, parse_shard, predict_cohort

        models = load_models(modelsFolder, device)
        return predict_cohort(cohortDir, models, outDir, shard=parse_shard(shard), resume=resume, device=device)


class HEROVisionTest(ScriptedLoadableModuleTest):
    """Runs in Slicer (Developer mode → Reload and Test) on a freshly generated phantom case."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_InspectPhantomCase()

    def test_InspectPhantomCase(self):
        import tempfile

        from HEROVisionLib.phantom import generate_case, write_case

        self.delayDisplay("Generating a phantom case")
        with tempfile.TemporaryDirectory() as folder:
            case = generate_case(seed=1, index=1)
            caseFolder = write_case(case, folder)
            text = HEROVisionLogic().inspectCase(caseFolder)
        self.assertIn("case A0001", text)
        self.assertNotIn("unavailable", text)
        self.delayDisplay("Test passed")
