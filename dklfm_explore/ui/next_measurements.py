"""Where to measure next: the K best next measurement times of the task on screen, ranked by :mod:`dklfm_explore.design`."""

from __future__ import annotations

import pandas as pd
import panel as pn
import param

from ..data import TaskSet
from ..design import next_measurements

__all__ = ["suggest", "suggestions_text", "k_input", "DEFAULT_NEXT", "MAX_NEXT", "NEXT_HELP"]

DEFAULT_NEXT = 3
"""Suggestions shown at first: enough to plan a small experiment, few enough to read on the plot."""
MAX_NEXT = 10
NEXT_HELP = ("Where one more measurement of every output would shrink the latent force's posterior variance most "
             "(averaged over the window), picked one after another, each given the ones before. The DKLFM's "
             "posterior is conditioned exactly; the task's embedding is held at the current data's. 0 hides them.")


def suggest(model, tasks: TaskSet | None, task: int, k: int) -> pd.DataFrame | None:
    """:func:`~dklfm_explore.design.next_measurements` of task ``task`` of ``tasks`` (None without a model or tasks, or for K = 0)."""
    if model is None or tasks is None or k < 1:
        return None
    return next_measurements(model, tasks, k, task=task)


def suggestions_text(suggestions: pd.DataFrame | None, tasks: TaskSet | None) -> str:
    """The suggestions as one short paragraph: rank, time (and space), variance reduction, the variance before and after."""
    if suggestions is None or not len(suggestions):
        return ""
    attrs = tasks.dataset.attrs if tasks is not None else {}
    time_unit = f" {attrs['time_unit']}" if attrs.get("time_unit") else ""
    unit = f"{attrs['latent_unit']} squared" if attrs.get("latent_unit") else f"{attrs.get('latent_name') or 'latent'} units squared"
    picks = []
    for row in suggestions.itertuples():
        where = f"space {row.space:.3g}, " if "space" in suggestions.columns else ""
        picks.append(f"{row.rank}. {where}time {row.time:.3g}{time_unit} (lowers it by {row.variance_reduction:.2g})")
    before = float(suggestions["remaining_variance"].iloc[0] + suggestions["variance_reduction"].iloc[0])
    after = float(suggestions["remaining_variance"].iloc[-1])
    return (f"**Where to measure next**, by how much each measurement in turn lowers the force's mean posterior variance "
            f"({unit}; now {before:.2g}, after all {len(suggestions)}: {after:.2g}): " + "; ".join(picks) + ".")


def k_input(parameter: param.Parameter) -> pn.widgets.IntInput:
    """The K box of a view's ``next_k`` parameter, with :data:`NEXT_HELP` as its tooltip."""
    return pn.widgets.IntInput.from_param(parameter, width=170, description=NEXT_HELP)
