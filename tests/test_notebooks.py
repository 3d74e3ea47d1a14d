"""Every teaching notebook runs top to bottom with tiny settings injected after its `parameters` cell, and the
numbers its result sentences state agree with the results it plotted (recomputed from the raw arrays)."""

import json
import re
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"

TINY = {
    "01_latent_force_models.ipynb": "N_TASKS = 3\nN_POINTS = 12",
    "02_meta_learning.ipynb": "N_TRAIN = 24\nN_TEST = 3\nN_POINTS = 12\nEPOCHS = 2\nCOMPARE_TASKS = 2\nPER_TASK_ITERATIONS = 20",
    "03_lotka_volterra_extrapolation.ipynb": "N_TRAIN = 16\nN_TEST = 2\nN_POINTS = 20\nEPOCHS = 2",
    "04_reaction_diffusion_super_resolution.ipynb": "N_TRAIN = 12\nN_TEST = 1\nCOARSE = 9\nFINE = 5\nEPOCHS = 2",
    "05_real_data_p53.ipynb": "TRAIN_IF_MISSING_TASKS = 16\nTRAIN_IF_MISSING_EPOCHS = 2\nOOD_REFERENCE_TASKS = 100\nPER_TASK_ITERATIONS = 20",
    "06_your_own_system.ipynb": "N_TRAIN = 12\nN_TEST = 2\nN_POINTS = 12\nEPOCHS = 2",
}

_PRIOR_MSE = """
import json as _json, numpy as _np
_f = {truth}.values
_m, _s = float({train}.dataset["f"].mean()), float({train}.dataset["f"].std())
print("CHECK " + _json.dumps({{"mse": float(_np.nanmean((({result}["latent_mean"].values - _f) / _s) ** 2)),
                              "prior": float(_np.nanmean(((_m - _f) / _s) ** 2))}}))
"""

CHECKS = {
    "01_latent_force_models.ipynb": _PRIOR_MSE.format(truth='linear.dataset["f"]', train="linear", result="exact"),
    "02_meta_learning.ipynb": _PRIOR_MSE.format(truth='test_tasks.dataset["f"]', train="train_tasks", result="result") + """
_g = few.dataset["f"].values
_per = {k: float(_np.mean([_np.nanmean(((r["latent_mean"].values[i] - _g[i]) / _s) ** 2) for i in range(len(_g))]))
        for k, r in results.items()}
print("CHECK2 " + _json.dumps(_per))
""",
    "03_lotka_volterra_extrapolation.ipynb": """
import json as _json, numpy as _np
_f, _t = test_tasks.dataset["f"].values, result["time"].values
_m, _s = float(train_tasks.dataset["f"].mean()), float(train_tasks.dataset["f"].std())
_out = _t > end
print("CHECK " + _json.dumps({"mse": float((((result["latent_mean"].values - _f) / _s) ** 2)[:, _out].mean()),
                              "prior": float((((_m - _f) / _s) ** 2)[:, _out].mean())}))
""",
    "04_reaction_diffusion_super_resolution.ipynb": """
import json as _json, numpy as _np
_f = fine.dataset["f"].values
_m, _s = float(train_tasks.dataset["f"].mean()), float(train_tasks.dataset["f"].std())
print("CHECK " + _json.dumps({"mse": float((((result["latent_mean"].values - _f) / _s) ** 2).mean()),
                              "exact": float((((exact["latent_mean"].values - _f) / _s) ** 2).mean()),
                              "prior": float((((_m - _f) / _s) ** 2).mean())}))
""",
    "05_real_data_p53.ipynb": """
import json as _json, numpy as _np
_big = TaskSet(p53.dataset.assign(y_se=p53.dataset["y_se"] * 1000))
_known = mine.dataset["f"].values
_rmse = {s: float(_np.sqrt(_np.nanmean((model.infer(mine, output_scaling=s)["latent_mean"].values - _known) ** 2)))
         for s in ("self", "training")}
_one = one.dataset["f"].values
_beyond = {name: float(_np.mean(((res["latent_mean"].values - _one) / model.normaliser.f_std) ** 2)) for name, (res, _) in answers.items()}
print("CHECK " + _json.dumps({"change": float(_np.abs(model.infer(_big)["latent_mean"].values
                                                      - model.infer(p53)["latent_mean"].values).max()), **_rmse,
                              "beyond": _beyond, "scores": [float(v) for v in p53_scores],
                              "first_pick": float(plan["time"].iloc[0]),
                              "p53_peaks": [float(r["time"][int(_np.argmax(r["latent_mean"].values[0]))]) for r in (p53_first, p53_refined)]}))
""",
    "06_your_own_system.ipynb": _PRIOR_MSE.format(truth='test_tasks.dataset["f"]', train="train_tasks", result="result"),
}

NUMBER = r"([-+0-9.e]+)"


def _close(stated: str, actual: float) -> bool:
    """A number printed with 3 decimals or 3 significant figures matches the recomputed value."""
    value = float(stated)
    return abs(value - actual) <= max(5e-4, 5e-3 * abs(actual))


def _prior_sentence(text: str, check: dict, who: str) -> None:
    found = re.search(rf"{who} latent MSE {NUMBER} against the prior-mean predictor's {NUMBER} \({NUMBER}x (lower|higher)", text)
    assert found, f"no '{who} latent MSE ... against the prior-mean predictor's ...' sentence"
    mse, prior, _, direction = found.groups()
    assert _close(mse, check["mse"]) and _close(prior, check["prior"]), (found.group(0), check)
    assert direction == ("lower" if check["mse"] < check["prior"] else "higher"), (found.group(0), check)


def _extrapolation_sentence(text: str, check: dict) -> None:
    found = re.search(rf"Beyond the training window .*?DKLFM latent MSE {NUMBER}, prior-mean predictor {NUMBER} "
                      rf"\(ratio {NUMBER}\): the model (carries the cycle|carries part of the cycle|does not extrapolate)", text)
    assert found, "no 'Beyond the training window ...' sentence"
    mse, prior, _, verdict = found.groups()
    assert _close(mse, check["mse"]) and _close(prior, check["prior"]), (found.group(0), check)
    ratio = check["mse"] / check["prior"]
    expected = "carries the cycle" if ratio < 0.5 else "carries part of the cycle" if ratio < 0.9 else "does not extrapolate"
    assert verdict == expected, (found.group(0), check)


def _super_resolution_sentence(text: str, check: dict) -> None:
    found = re.search(rf"DKLFM latent MSE {NUMBER}, exact LFM {NUMBER}, prior-mean predictor {NUMBER}: "
                      r"the DKLFM is (better than|no better than) the prior mean", text)
    assert found, "no 'DKLFM latent MSE ..., exact LFM ...' sentence"
    mse, exact, prior, standing = found.groups()
    assert _close(mse, check["mse"]) and _close(exact, check["exact"]) and _close(prior, check["prior"]), (found.group(0), check)
    assert standing == ("better than" if check["mse"] < 0.9 * check["prior"] else "no better than"), (found.group(0), check)


def _real_data_sentences(text: str, check: dict) -> None:
    found = re.search(rf"measurement errors: {NUMBER}; the per-value errors (are used|are NOT used)", text)
    assert found, "no sentence on whether the measurement errors are used"
    assert found.group(2) == ("are used" if check["change"] > 1e-9 else "are NOT used"), (found.group(0), check)
    found = re.search(rf"output_scaling='self' {NUMBER}, 'training' {NUMBER}: '(self|training)' is closer", text)
    assert found, "no RMSE sentence for output_scaling"
    assert _close(found.group(1), check["self"]) or abs(float(found.group(1)) - check["self"]) <= 5e-3, (found.group(0), check)
    assert found.group(3) == min(("self", "training"), key=check.get), (found.group(0), check)
    found = re.search(rf"p53 5 Gy out-of-distribution scores: replicates {NUMBER}, {NUMBER}, {NUMBER}, pooled {NUMBER} \((all below 1|above 1 for some)", text)
    assert found, "no sentence with p53's out-of-distribution scores"
    assert all(abs(float(stated) - actual) <= 5e-3 for stated, actual in zip(found.groups()[:4], check["scores"])), (found.group(0), check)
    assert found.group(5) == ("all below 1" if max(check["scores"]) <= 1 else "above 1 for some"), (found.group(0), check)
    beyond = check["beyond"]
    found = re.search(rf"Refined latent MSE {NUMBER} against the first answer's {NUMBER} and the per-task LFM's {NUMBER};", text)
    assert found, "no sentence comparing the refined answer"
    assert all(_close(stated, beyond[name]) for stated, name in zip(found.groups(), ("refined", "first answer", "per-task LFM from the prior"))), (found.group(0), check)
    found = re.search(rf"the first answer's activity peaks at {NUMBER} h, the refined one's at {NUMBER} h", text)
    assert found and [float(v) for v in found.groups()] == check["p53_peaks"], (found and found.group(0), check)
    found = re.search(r"the first (falls inside|falls outside) the 4-8 h gap", text)
    assert found and found.group(1) == ("falls inside" if 4 < check["first_pick"] < 8 else "falls outside"), (found and found.group(0), check)


def _comparison_sentences(text: str, check: dict) -> None:
    _prior_sentence(text, check, "DKLFM")
    table = json.loads(text.rsplit("CHECK2 ", 1)[1].splitlines()[0])
    found = re.search(rf"its latent MSE is {NUMBER}, {NUMBER}x the per-task LFM's {NUMBER}", text)
    assert found, "no comparison sentence"
    assert _close(found.group(1), table["DKLFM"]) and _close(found.group(3), table["per-task LFM"]), (found.group(0), table)


CLAIMS = {
    "01_latent_force_models.ipynb": lambda text, check: _prior_sentence(text, check, "exact LFM"),
    "02_meta_learning.ipynb": _comparison_sentences,
    "03_lotka_volterra_extrapolation.ipynb": _extrapolation_sentence,
    "04_reaction_diffusion_super_resolution.ipynb": _super_resolution_sentence,
    "05_real_data_p53.ipynb": _real_data_sentences,
    "06_your_own_system.ipynb": lambda text, check: _prior_sentence(text, check, "DKLFM"),
}


def _notebook(name):
    return nbformat.read(NOTEBOOKS / name, as_version=4)


def _markdown(notebook) -> str:
    return "\n".join(cell.source for cell in notebook.cells if cell.cell_type == "markdown")


def test_every_notebook_has_tiny_settings_and_no_stored_outputs():
    names = sorted(p.name for p in NOTEBOOKS.glob("*.ipynb"))
    assert names == sorted(TINY) == sorted(CHECKS) == sorted(CLAIMS)
    for name in names:
        notebook = _notebook(name)
        assert any("parameters" in cell.metadata.get("tags", []) for cell in notebook.cells), name
        assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code"), f"{name} has outputs"


@pytest.mark.parametrize("name", sorted(TINY))
def test_every_notebook_has_exercises_with_solutions_and_links_the_next(name):
    text = _markdown(_notebook(name))
    exercises = text.split("## Exercises", 1)
    assert len(exercises) == 2, f"{name} has no '## Exercises' section"
    assert re.search(r"^1\. ", exercises[1], re.M) and re.search(r"^2\. ", exercises[1], re.M), f"{name}: fewer than two exercises"
    assert "<details><summary>Solutions" in exercises[1], f"{name}: no collapsed solutions"
    names = sorted(TINY)
    following = names[names.index(name) + 1] if name != names[-1] else names[0]
    assert f"]({following})" in text, f"{name} does not link {following}"
    assert re.search(r"\]\(https://", text), f"{name} cites nothing with a link"


@pytest.mark.notebook
@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(TINY))
def test_notebook_runs_and_its_sentences_follow_its_numbers(name, tmp_path, monkeypatch):
    from nbclient import NotebookClient

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    notebook = _notebook(name)
    position = next(i for i, cell in enumerate(notebook.cells) if "parameters" in cell.metadata.get("tags", []))
    notebook.cells.insert(position + 1, nbformat.v4.new_code_cell(TINY[name]))
    notebook.cells.append(nbformat.v4.new_code_cell(CHECKS[name]))
    NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for cell in notebook.cells for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
    check = json.loads(text.rsplit("CHECK ", 1)[1].splitlines()[0])
    CLAIMS[name](text, check)
