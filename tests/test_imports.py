"""The package's import graph: no upward arrows, no cycles beyond the known one, simulators below the learner."""

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


def test_the_simulators_reach_no_learner_module(graph):
    # what systems/ and simulate import, transitively, without the package __init__ (which re-exports all)
    arrows, _ = graph
    reached, todo = set(), [m for m in arrows if m.startswith("dklfm_explore.systems") or m == "dklfm_explore.simulate"]
    while todo:
        module = todo.pop()
        if module not in reached and module != "dklfm_explore":
            reached.add(module)
            todo.extend(arrows[module])
    assert {m for m in reached if m.startswith("dklfm_explore.model")} == set()


def test_public_verbs_stay_functions_after_their_modules_are_imported():
    # a submodule import binds the package attribute of its name; the verb `train` must win over module `train`
    code = (
        "import dklfm_explore.train, dklfm_explore.trained, dklfm_explore.cli; from dklfm_explore import train, load_model, get_baseline; "
        "print(callable(train) and train.__module__, load_model.__module__, get_baseline.__module__)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.split() == ["dklfm_explore.train", "dklfm_explore.trained", "dklfm_explore.model.baselines"]
