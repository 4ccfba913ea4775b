"""The layering of DESIGN.md holds: no module of HEROVisionLib imports one of a layer above its own
(imports inside functions included), so each layer can be read, tested and changed with only the
ones below it in mind."""

import ast
from pathlib import Path

import pytest

LIBRARY = Path(__file__).resolve().parents[1] / "HEROVisionLib"
#: Layer of each top-level module or package, bottom first (DESIGN.md, Architecture).
LAYERS = {"errors": 1, "devices": 1, "plots": 1, "io": 2, "ivim": 3, "phantom": 3, "staging": 3, "transforms": 4,
          "models": 5, "stats": 6, "predict": 7, "train": 8, "evaluate": 8, "clinical": 9, "slicer": 10, "cli": 11}


def _layer(module: str) -> int | None:
    parts = module.split(".")
    return LAYERS.get(parts[1]) if parts[0] == "HEROVisionLib" and len(parts) > 1 else None


def _imports(path: Path):
    module = ".".join(path.relative_to(LIBRARY.parent).with_suffix("").parts)
    package = module.split(".")[:-1] if path.name != "__init__.py" else module.split(".")[:-1]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            names = [f"{target}.{alias.name}" for alias in node.names] if not node.module else [target]
            yield from names
        elif isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)


SOURCES = sorted(p for p in LIBRARY.rglob("*.py") if p.name != "__init__.py" or p.parent != LIBRARY)


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(LIBRARY)))
def test_no_module_imports_a_layer_above_its_own(path):
    own = _layer(".".join(path.relative_to(LIBRARY.parent).with_suffix("").parts))
    assert own is not None, f"{path.name}: give its package a layer in LAYERS"
    above = sorted({target for target in _imports(path) if (_layer(target) or 0) > own})
    assert not above, f"imports from a higher layer: {above}"


def test_every_top_level_module_has_a_layer():
    names = {p.stem if p.is_file() else p.name for p in LIBRARY.iterdir()
             if (p.suffix == ".py" and p.name != "__init__.py") or (p / "__init__.py").is_file()}
    assert names == set(LAYERS)
