"""The layer map of DESIGN.md, enforced: imports go one way, top to bottom."""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[2] / "ketch"

# Lower number = lower layer. A module may import its own layer or lower.
LAYER = {
    "_sys": 0, "errors": 0, "paths": 0,
    "oci": 1,
    "runtime": 2, "content": 2, "snapshot": 2,
    "build": 3, "network": 3, "vm": 3, "registry": 3, "image": 3,
    "engine": 4,
    "bench": 5,
    "cli": 6, "api": 6, "compose": 6,
}


def _package_of(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "ketch" or len(parts) < 2:
        return None
    return parts[1]


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


def test_every_package_has_a_layer():
    for child in PKG.iterdir():
        if child.name.startswith("__") or child.name == "py.typed":
            continue
        name = child.stem if child.suffix == ".py" else child.name
        assert name in LAYER, f"ketch/{child.name} is not on the layer map"


def test_imports_go_down_only():
    bad = []
    for path in PKG.rglob("*.py"):
        rel = path.relative_to(PKG)
        own = rel.parts[0].removesuffix(".py")
        if own not in LAYER:
            continue
        for name in _imports(path):
            other = _package_of(name)
            if other is None or other not in LAYER:
                continue
            if LAYER[other] > LAYER[own]:
                bad.append(f"{rel} imports {name}")
    assert not bad, "imports that go up the layer map:\n" + "\n".join(bad)
