"""Every teaching notebook runs top to bottom with tiny settings injected after its `parameters` cell."""

import os
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"

TINY = {
    "01_latent_force_models.ipynb": "N_TASKS = 3\nN_POINTS = 12",
    "02_meta_learning.ipynb": "N_TRAIN = 24\nN_TEST = 3\nN_POINTS = 12\nMAX_MINUTES = 0.2\nEPOCHS = 2\nPER_TASK_TASKS = 1",
    "03_lotka_volterra_extrapolation.ipynb": "N_TRAIN = 16\nN_TEST = 2\nN_POINTS = 20\nMAX_MINUTES = 0.2",
    "04_reaction_diffusion_super_resolution.ipynb": "N_TRAIN = 12\nN_TEST = 1\nCOARSE = 9\nFINE = 12\nMAX_MINUTES = 0.2",
    "05_real_data_p53.ipynb": "TRAIN_IF_MISSING_TASKS = 16\nMAX_MINUTES = 0.2",
}


def test_every_notebook_has_tiny_settings_and_no_stored_outputs():
    names = sorted(p.name for p in NOTEBOOKS.glob("*.ipynb"))
    assert names == sorted(TINY)
    for name in names:
        notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
        assert any("parameters" in cell.metadata.get("tags", []) for cell in notebook.cells), name
        assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code"), f"{name} has outputs"


@pytest.mark.notebook
@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(TINY))
def test_notebook_runs(name, tmp_path):
    from nbclient import NotebookClient

    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    position = next(i for i, cell in enumerate(notebook.cells) if "parameters" in cell.metadata.get("tags", []))
    notebook.cells.insert(position + 1, nbformat.v4.new_code_cell(TINY[name]))
    env_threads = os.environ.setdefault("OMP_NUM_THREADS", "1")
    assert env_threads
    NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    errors = [o for cell in notebook.cells for o in cell.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
