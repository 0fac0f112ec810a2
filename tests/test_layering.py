"""The package dependency rule: core <- engines <- pipeline <- CLI and the
``streamdet`` API; training uses all three; nothing at runtime imports training,
and nothing of ours imports the API (function-level imports too)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = {
    "core": {"engines", "pipeline", "training", "run_stream", "streamdet"},
    "engines": {"pipeline", "training", "run_stream", "streamdet"},
    "pipeline": {"training", "run_stream", "streamdet"},
    "training": {"run_stream", "streamdet"},
    "streamdet": {"training", "run_stream"},
}


def imported_packages(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_only_what_it_may(package):
    bad = {str(p.relative_to(ROOT)): sorted(imported_packages(p) & FORBIDDEN[package])
           for p in (ROOT / package).rglob("*.py")}
    assert {k: v for k, v in bad.items() if v} == {}


def test_preprocessing_lives_only_in_core():
    """BGR->RGB / blobFromImage / (x / 255) is written once, in core/image.py."""
    patterns = ("blobFromImage", "COLOR_BGR2RGB", "::-1].transpose", "/ 255",
                "div_(255", "1 / 255")
    hits = []
    for package in ("engines", "pipeline", "training"):
        for path in (ROOT / package).rglob("*.py"):
            for n, line in enumerate(path.read_text().splitlines(), 1):
                code = line.split("#")[0]
                if any(p in code for p in patterns) and '"""' not in code:
                    hits.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert hits == []
