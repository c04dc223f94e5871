"""Package boundaries, checked on the source: what may import what (an AST walk, no imports run).

- mcdm_model reaches the pipeline only through `pipeline.common`, so stage files can change freely;
- the libraries (pipeline, mcdm_model) import neither tests nor benchmarks;
- benchmarks import no test code (what they share with tests lives in benchmarks/kit);
- nobody edits sys.path to reach tests/ (test helpers are the package tests.helpers).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in a file of the repo."""
    return _imports_of(path.read_text(), path.relative_to(ROOT).with_suffix("").parts[:-1])


def _imports_of(source: str, package: tuple[str, ...]) -> list[tuple[int, str]]:
    """Imports in `source` of a module inside `package`; relative imports resolved against it."""
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = list(package[: len(package) - node.level + 1]) if node.level else []
            mod = ".".join([*base, node.module] if node.module else base)
            out += [(node.lineno, mod)] + [(node.lineno, f"{mod}.{a.name}") for a in node.names if not node.module]
    return out


def _files(*dirs: str) -> list[Path]:
    return sorted(p for d in dirs for p in (ROOT / d).rglob("*.py"))


def _top(mod: str) -> str:
    return mod.split(".")[0]


def test_mcdm_model_uses_the_pipeline_only_through_common():
    bad = [f"{p.relative_to(ROOT)}:{line} imports {mod}" for p in _files("mcdm_model") for line, mod in _imports(p)
           if _top(mod) == "pipeline" and mod != "pipeline.common" and not mod.startswith("pipeline.common.")]  # fmt: skip
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("lib", ["pipeline", "mcdm_model"])
def test_libraries_import_no_tests_or_benchmarks(lib):
    bad = [f"{p.relative_to(ROOT)}:{line} imports {mod}" for p in _files(lib) for line, mod in _imports(p)
           if _top(mod) in ("tests", "benchmarks")]  # fmt: skip
    assert not bad, "\n".join(bad)


def test_benchmarks_import_no_tests():
    bad = [f"{p.relative_to(ROOT)}:{line} imports {mod}" for p in _files("benchmarks") for line, mod in _imports(p)
           if _top(mod) == "tests"]  # fmt: skip
    assert not bad, "\n".join(bad)


def test_no_sys_path_reaches_into_tests():
    bad = [str(p.relative_to(ROOT)) for p in _files("pipeline", "mcdm_model", "benchmarks", "tests")
           if p != Path(__file__) and "sys.path" in p.read_text() and '"tests"' in p.read_text()]  # fmt: skip
    assert not bad, bad


def test_the_checker_resolves_relative_and_lazy_imports():
    src = "def f():\n    from ..models.sync_loader import load_sync_scorer\nfrom . import media\nimport pipeline.stages.sync\n"
    assert {m for _, m in _imports_of(src, ("pipeline", "stages"))} == {
        "pipeline.stages.sync", "pipeline.stages", "pipeline.stages.media", "pipeline.models.sync_loader"}
