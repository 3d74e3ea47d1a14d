"""What the result views share: timing, the baseline beside the DKLFM, scores, the OOD badge, Refine, query meshes."""

from __future__ import annotations

import statistics
import time as clock

import numpy as np
import panel as pn

from ..data import TaskSet
from ..errors import InvalidInputError
from ..metrics import task_latent_mse
from ..model.baselines import EXACT_SYSTEMS
from ..refine import refinable_system

__all__ = ["timed_infer", "baseline_for", "latent_mse", "latent_name", "refine_reason", "show_refine", "ood_badge", "refine_mesh",
           "TIMING_REPEATS", "EXACT_BASELINE_SYSTEMS", "REFINED_LABEL", "REFINE_HELP"]

TIMING_REPEATS = 5
"""Inference is timed as the median of this many calls after a first (warm-up) call, whose cost is reported apart."""
REFINED_LABEL = "DKLFM refined"
REFINE_HELP = ("A short fit of this task alone, started from the first (amortised) answer: "
               "slower than the first answer, closer to a per-task fit.")
OOD_COLOURS = {True: "#b02a37", False: "#146c43"}
OOD_HELP = ("Out-of-distribution score: above 1, the data are unlike the central 99% of the tasks the model "
            "was validated on; treat its answer with care.")


def timed_infer(model, tasks: TaskSet, repeats: int = TIMING_REPEATS, **query):
    """``(result, first call ms per task, median ms per task of ``repeats`` later calls)`` of ``model.infer(tasks, **query)``."""
    started = clock.perf_counter()
    result = model.infer(tasks, **query)
    first = (clock.perf_counter() - started) * 1e3 / tasks.n_tasks
    times = []
    for _ in range(repeats):
        started = clock.perf_counter()
        model.infer(tasks, **query)
        times.append((clock.perf_counter() - started) * 1e3 / tasks.n_tasks)
    return result, first, statistics.median(times)


EXACT_BASELINE_SYSTEMS = EXACT_SYSTEMS
"""Systems whose latent force model is linear, so the exact LFM posterior exists; the others get the per-task LFM."""


def baseline_for(system_name: str) -> tuple[str, str]:
    """``(label, name in BASELINES)`` of the reference method shown beside the DKLFM for a system."""
    if system_name in EXACT_BASELINE_SYSTEMS:
        return "exact LFM (true parameters)", "exact-lfm"
    return "per-task LFM", "per-task-lfm"


def latent_name(tasks: TaskSet | None) -> str:
    """What the tasks' system calls its latent ("transcription factor activity", "p53 activity"): the word every title,
    axis and export of it uses."""
    name = tasks.dataset.attrs.get("latent_name") if tasks is not None else None
    return str(name) if name else "latent force"


def latent_mse(result, tasks: TaskSet, task: int = 0, scale: float = 1.0) -> float:
    """:func:`~dklfm_explore.metrics.task_latent_mse` of one task, NaN when its force is unknown."""
    if not tasks.has_latent:
        return float("nan")
    return task_latent_mse(result, tasks.dataset["f"], task, scale)


def refine_reason(model) -> str:
    """Why refining does not apply to ``model`` ('' when it does): it needs a registered system with an ODE right-hand side."""
    try:
        refinable_system(model.system_name)
    except InvalidInputError as error:
        return str(error)
    return ""


def show_refine(button: pn.widgets.Button, model) -> None:
    """Show the Refine ``button`` for ``model``: enabled where refining applies, else greyed with the reason as its tooltip."""
    reason = "" if model is None else refine_reason(model)
    button.param.update(visible=model is not None, disabled=bool(reason), description=reason or REFINE_HELP)


def ood_badge(result, task: int = 0) -> str:
    """A coloured badge saying whether task ``task`` of ``result`` looks like the model's validation tasks ("" without a score)."""
    if result is None or "ood_score" not in result:
        return ""
    score = float(result["ood_score"].values[task])
    if bool(result["out_of_distribution"].values[task]):
        colour, text = OOD_COLOURS[True], f"out of distribution (score {score:.2g} > 1)"
    else:
        colour, text = OOD_COLOURS[False], f"in distribution (score {score:.2g} ≤ 1)"
    return (f"<span style='background:{colour};color:white;border-radius:4px;padding:1px 6px' "
            f"title='{OOD_HELP}'>{text}</span>")


def refine_mesh(times: np.ndarray, factor: int) -> np.ndarray:
    """Split every interval of ``times (time,)`` into ``factor`` equal ones; the result contains ``times`` exactly."""
    times = np.asarray(times, dtype=np.float64)
    fractions = np.arange(factor) / factor
    inner = times[:-1, None] + np.diff(times)[:, None] * fractions[None, :]
    return np.append(inner.ravel(), times[-1])
