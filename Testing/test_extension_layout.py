"""The Slicer extension's CMake files list every script and resource that exists, and only those."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _listed(cmake: Path, variable: str) -> set[str]:
    text = cmake.read_text()
    block = re.search(rf"set\({variable}\s+(.*?)\)", text, re.S).group(1)
    return {line.strip() for line in block.splitlines() if line.strip() and not line.strip().startswith("#")}


def test_library_cmake_lists_every_python_file():
    listed = _listed(ROOT / "HEROVisionLib" / "CMakeLists.txt", "HEROVisionLib_PYTHON_SCRIPTS")
    on_disk = {str(p.relative_to(ROOT)) for p in (ROOT / "HEROVisionLib").rglob("*.py")}
    assert listed == on_disk


def test_module_cmake_lists_its_script_and_resources():
    cmake = ROOT / "HEROVision" / "CMakeLists.txt"
    resources = {r.replace("${MODULE_NAME}", "HEROVision") for r in _listed(cmake, "MODULE_PYTHON_RESOURCES")}
    on_disk = {str(p.relative_to(ROOT / "HEROVision")) for p in (ROOT / "HEROVision" / "Resources").rglob("*")
               if p.is_file()}
    assert resources == on_disk
    assert _listed(cmake, "MODULE_PYTHON_SCRIPTS") == {"${MODULE_NAME}.py"}


def test_extension_cmake_declares_metadata_and_modules():
    text = (ROOT / "CMakeLists.txt").read_text()
    for field in ("EXTENSION_HOMEPAGE", "EXTENSION_CATEGORY", "EXTENSION_CONTRIBUTORS", "EXTENSION_DESCRIPTION",
                  "EXTENSION_ICONURL", "EXTENSION_SCREENSHOTURLS", "EXTENSION_DEPENDS"):
        assert re.search(rf"set\({field} \"[^\"]+\"\)", text), field
    for line in ("find_package(Slicer REQUIRED)", "add_subdirectory(HEROVision)",
                 "include(${Slicer_EXTENSION_GENERATE_CONFIG})", "include(${Slicer_EXTENSION_CPACK})"):
        assert line in text


def test_every_ui_name_the_widget_uses_exists_in_the_designer_file():
    """The Widget reaches its controls as ``self.ui.<name>``; a renamed or deleted control would only
    fail inside Slicer. Parameter-node bindings must name fields of the parameter node."""
    import xml.etree.ElementTree as ElementTree

    module = (ROOT / "HEROVision" / "HEROVision.py").read_text(encoding="utf-8")
    tree = ElementTree.parse(ROOT / "HEROVision" / "Resources" / "UI" / "HEROVision.ui")
    widgets = {element.get("name") for element in tree.iter("widget")}
    used = set(re.findall(r"self\.ui\.(\w+)", module))
    assert used and used <= widgets, used - widgets
    bound = {prop.find("string").text for prop in tree.iter("property") if prop.get("name") == "SlicerParameterName"}
    parameter_class = re.search(r"class HEROVisionParameterNode:(.*?)\n\n\n", module, re.S).group(1)
    fields = set(re.findall(r"^    (\w+):", parameter_class, re.M))
    assert bound and bound <= fields, bound - fields


def test_the_bundled_models_are_installed_where_the_library_looks_for_them(monkeypatch):
    """``bundled_models_folder`` looks two folders above ``models/model_set.py``: beside the installed
    ``HEROVisionLib``; the CMake rules copy and install ``Resources/Models`` there, every package."""
    from HEROVisionLib.models.model_set import PACKAGE_NAMES, bundled_models_folder

    monkeypatch.delenv("HEROVISION_MODELS", raising=False)
    cmake = (ROOT / "HEROVisionLib" / "CMakeLists.txt").read_text()
    source = re.search(r"set\(HEROVisionLib_MODELS_SOURCE (\S+)\)", cmake).group(1)
    assert source == "${CMAKE_CURRENT_SOURCE_DIR}/../Resources/Models"
    for rule in ("file(COPY ${HEROVisionLib_MODELS_SOURCE}", "install(DIRECTORY ${HEROVisionLib_MODELS_SOURCE}"):
        block = cmake[cmake.index(rule):]
        block = block[: block.index(")\n")]
        assert "${Slicer_QTSCRIPTEDMODULES_LIB_DIR}/Resources" in block or \
            "${Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR}/Resources" in block
    library_parent = Path(__import__("HEROVisionLib").__file__).resolve().parents[1]
    assert bundled_models_folder() == library_parent / "Resources" / "Models"
    assert all((bundled_models_folder() / name / "manifest.sha256").is_file() for name in PACKAGE_NAMES.values())
