"""The package's import graph: no upward arrows, no cycles beyond the known one, light simulators."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("import_map", ROOT / "scripts" / "import_map.py")
import_map = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(import_map)

KNOWN_CYCLES: list[list[str]] = []
"""Cycles tolerated for now (none since configs and checkpoint I/O left train/trained)."""


@pytest.fixture(scope="module")
def graph():
    return import_map.import_map(ROOT)


def test_no_arrow_points_up_a_layer(graph):
    assert import_map.upward(*graph) == []


def test_no_new_import_cycle(graph):
    assert [c for c in import_map.cycles(*graph) if c not in KNOWN_CYCLES] == []


def test_cycle_finder_sees_a_function_local_cycle():
    graph = {"p.a": {"p.b": False}, "p.b": {"p.a": True}, "p.c": {"p.a": False}}
    assert import_map.cycles(graph, set()) == [["p.a", "p.b"]]


def test_upward_arrow_is_reported():
    graph = {"dklfm_explore.systems.forces": {"dklfm_explore.model.linalg": False}, "dklfm_explore.model.linalg": {}}
    assert import_map.upward(graph, set()) == [("dklfm_explore.systems.forces", "dklfm_explore.model.linalg")]


def test_importing_the_simulators_does_not_import_the_learner():
    code = "import sys, dklfm_explore.systems, dklfm_explore.simulate; print(sorted(m for m in sys.modules if m.startswith('dklfm_explore.model')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"
