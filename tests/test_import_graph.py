"""No import cycle between files: every import counts (module level, inside
functions, ``TYPE_CHECKING`` blocks) and so does every ``"module:Name"`` string
a registry resolves with ``import_spec``."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("core", "engines", "pipeline", "training", "streamdet")
SPEC = re.compile(r"^([A-Za-z_][\w.]*):[A-Za-z_]\w*$")


def module_file(module: str) -> Path | None:
    """The file of one of our modules (``pipeline.stages`` -> its __init__)."""
    base = ROOT.joinpath(*module.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[Path]:
    """The files of ours that ``path`` imports or names in a spec string."""
    here = module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    found: set[Path] = set()

    def add(module: str, names: list[str] = ()) -> None:
        for name in names:  # ``from pkg import submodule``
            if (sub := module_file(f"{module}.{name}")) is not None:
                found.add(sub)
                continue
            if (target := module_file(module)) is not None:
                found.add(target)
        if not names and (target := module_file(module)) is not None:
            found.add(target)

    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*anchor, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            add(module, [a.name for a in node.names])
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if (m := SPEC.match(node.value)) and m.group(1).split(".")[0] in PACKAGES:
                add(m.group(1))
    found.discard(path)
    return found


def graph() -> dict[Path, set[Path]]:
    files = [p for pkg in PACKAGES if (ROOT / pkg).is_dir()
             for p in (ROOT / pkg).rglob("*.py")]
    files.append(ROOT / "run_stream.py")
    return {f: imports_of(f) for f in files}


def cycles(edges: dict[Path, set[Path]]) -> list[list[str]]:
    """Strongly connected components of more than one file (Tarjan)."""
    index: dict[Path, int] = {}
    low: dict[Path, int] = {}
    stack: list[Path] = []
    on_stack: set[Path] = set()
    found: list[list[str]] = []

    def visit(v: Path) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(str(w.relative_to(ROOT)))
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in edges:
        if v not in index:
            visit(v)
    return found


def test_the_graph_sees_function_level_imports_and_specs(tmp_path):
    edges = graph()
    registry = next(p for p in edges if p.name in ("build.py", "registry.py")
                    and p.parent.name == "engines")
    assert ROOT / "engines" / "yolo.py" in edges[registry]  # a spec string


def test_no_import_cycle_between_files():
    assert cycles(graph()) == []
