"""The house's shape: the learning core at ser/'s root (with data/, frontends/, models/) and three
wings above it, each importing only downward. Read from the sources' imports, lazy ones too."""

from __future__ import annotations

import ast
from pathlib import Path

SER = Path(__file__).resolve().parents[1] / "ser"
WINGS = ("experiment", "evidence", "serving")
# What each may import besides itself, floor by floor: the core nothing above it; evidence the
# core; serving and a running experiment the core and the evidence (results.json's one owner:
# an experiment writes it, an export reads it for its model card), never each other.
MAY_IMPORT = {"core": {"core"}, "evidence": {"core"}, "serving": {"core", "evidence"},
              "experiment": {"core", "evidence"}}


def module_name(path: Path) -> str:
    parts = path.relative_to(SER.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def wing(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 and parts[1] in WINGS else "core"


def imported(path: Path, known: set[str]) -> set[str]:
    """The ser modules a file imports, anywhere in it (``from ser.x import y`` names ser.x.y
    where that is a module)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("ser")}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("ser"):
            found |= {f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in known else node.module
                      for a in node.names}
    return found & known


def graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in SER.rglob("*.py")}
    return {name: imported(path, set(files)) - {name} for name, path in files.items()}


def test_each_wing_imports_only_downward():
    upward = [(name, target) for name, targets in graph().items() for target in targets
              if wing(target) != wing(name) and wing(target) not in MAY_IMPORT[wing(name)]]
    assert not upward, upward


def test_the_wings_and_the_core_hold_what_they_say():
    modules = set(graph())
    assert {m for m in modules if wing(m) == "experiment"} >= {"ser.experiment.train", "ser.experiment.preflight"}
    assert {"ser.evidence.results", "ser.serving.export", "ser.tasks", "ser.metrics"} <= modules
    root = {m for m in modules if m.count(".") == 1 and m.split(".")[1] not in ("data", "frontends", "models", *WINGS)}
    assert root == {"ser.augment", "ser.errors", "ser.metrics", "ser.module", "ser.ops", "ser.optim", "ser.readout",
                    "ser.tasks"}


def test_no_module_imports_itself_through_others():
    edges = {name: {t for t in targets if not name.startswith(t + ".") and not t.startswith(name + ".")}
             for name, targets in graph().items()}
    state: dict[str, str] = {}

    def visit(node, path):
        state[node] = "open"
        for target in edges.get(node, ()):
            if state.get(target) == "open":
                raise AssertionError(" -> ".join([*path, node, target]))
            if target not in state:
                visit(target, [*path, node])
        state[node] = "done"

    for name in sorted(edges):
        if name not in state:
            visit(name, [])
