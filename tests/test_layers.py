"""The import structure, read from the sources: layers import downward only, no cycles.

From the top: ``cli`` → ``runtime`` → ``devices`` → ``kernels``; the wire format
(``protocol``) is imported by ``devices``, ``firmware_sim``, ``cli`` and the benchmarks and
imports only the ground floor; ``firmware_sim`` imports neither ``devices`` nor ``kernels``;
``core`` imports nothing of the project. Module-level imports only (an import inside a
function is a deliberate deferral and is read too: it may not point upward either).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

#: Package -> the packages it may import (besides itself). ``devices`` starts firmware
#: processes (``hil``) through ``firmware_sim``'s launcher.
ALLOWED = {
    "core": set(),
    "protocol": {"core"},
    "kernels": {"core"},
    "firmware_sim": {"core", "protocol"},
    "devices": {"core", "protocol", "kernels", "firmware_sim"},
    "runtime": {"core", "protocol", "kernels", "devices"},
    "cli": {"core", "protocol", "kernels", "devices", "firmware_sim", "runtime"},
}


def _imports(path: Path, package: str) -> set[str]:
    """The ``twinpass.X.Y`` modules a file imports (relative imports resolved)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    parts = ["twinpass", package, *path.relative_to(REPO / package).with_suffix("").parts]
    if parts[-1] == "__init__":
        parts = parts[:-1]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("twinpass.")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = parts[: len(parts) - node.level + (path.name == "__init__.py")]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod.startswith("twinpass."):
                found.add(mod)
                # ``from twinpass.x import module``: the module itself, if it is one.
                found |= {f"{mod}.{a.name}" for a in node.names}
    return found


def _modules() -> dict[str, tuple[str, set[str]]]:
    out = {}
    for package in ALLOWED:
        for path in sorted((REPO / package).rglob("*.py")):
            rel = path.relative_to(REPO / package).with_suffix("")
            name = ".".join(["twinpass", package, *rel.parts]).removesuffix(".__init__")
            out[name] = (package, _imports(path, package))
    return out


MODULES = _modules()


@pytest.mark.parametrize("package", list(ALLOWED))
def test_a_package_imports_only_the_layers_below_it(package: str) -> None:
    wrong = sorted(
        f"{name} imports {target}"
        for name, (pkg, targets) in MODULES.items()
        if pkg == package
        for target in targets
        if target.split(".")[1] not in ALLOWED[package] | {package}
        and target.split(".")[1] in ALLOWED
    )
    assert not wrong, "\n".join(wrong)


def test_no_module_imports_itself_back_through_others() -> None:
    graph = {
        name: {t for t in targets if t in MODULES and t != name}
        for name, (_, targets) in MODULES.items()
    }
    # A package's __init__ imported for a submodule is no edge of the code's own.
    cycles = []
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join([*path[path.index(nxt) :], nxt]))
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert not cycles, "\n".join(cycles)
