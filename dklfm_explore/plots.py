"""Plots of task sets, posteriors and training runs as HoloViews elements (bokeh backend).

Pure functions: they take a :class:`~dklfm_explore.data.TaskSet`, an inference
result (the :class:`xarray.Dataset` returned by ``TrainedModel.infer``, with
``latent_mean``, ``latent_std`` ``(task, [space,] time)`` and ``output_mean``,
``output_std`` ``(task, output, [space,] time)``) or a training history, and
return HoloViews elements with their options set.  The dashboard and the
notebooks both call them; nothing here holds state.

Examples
--------
>>> from dklfm_explore import simulate, plots
>>> tasks = simulate("transcription", 3, seed=0)
>>> layout = plots.sample_tasks(tasks)            # doctest: +SKIP
"""

from __future__ import annotations

from typing import Mapping, Sequence

import holoviews as hv
import holoviews.plotting.bokeh  # noqa: F401  registers the bokeh backend's options
import numpy as np
import xarray as xr
from bokeh.models import LogTicker

from .data import TaskSet
from .metrics import COVERAGE_Z

__all__ = [
    "sample_tasks",
    "latent_posterior",
    "latent_posteriors",
    "next_measurement_marks",
    "output_posteriors",
    "extrapolation",
    "super_resolution",
    "super_resolution_profiles",
    "super_resolution_profile",
    "training_curves",
    "BAND_Z",
]

BAND_Z = COVERAGE_Z
"""Half-width of a central 95% Gaussian band in standard deviations."""

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22")
"""Colours of outputs and tasks (matplotlib's tab10 without red and grey, kept for models and truth)."""
MODEL_COLOUR = "#1f77b4"
BASELINE_COLOUR = "#d62728"
REFINED_COLOUR = "#2ca02c"
TRUTH_COLOUR = "#222222"
OBSERVATION_COLOUR = "#ff7f0e"
SUGGESTION_COLOUR = "#6f42c1"
"""Suggested next measurement times: a colour no model, truth or observation uses."""
REFERENCE_COLOURS = ("#6c757d", "#d62728", "#2ca02c")
"""Reference levels on the validation curve: the prior mean first, then other methods."""
BAND_ALPHA = 0.25
"""Opacity of a 95% band: light enough to see the truth and the observations through it."""
SPIKE_FRACTION = 0.06
"""Observation-time ticks are this fraction of the plot's value range tall, standing on its lowest value."""
WINDOW_ALPHA = 0.12
"""Opacity of the shaded training window in extrapolation plots."""
FIELD_CMAP = "viridis"
ERROR_CMAP = "magma"
PLOT_WIDTH = 560
PLOT_HEIGHT = 260
SMALL = dict(width=290, height=230, fontsize={"title": "10pt"})
"""Size of the panels shown three to a row (with their toolbars, three fit beside the sidebar on a 1440 px page)."""
IMAGE_SIZE = 240
AXIS_LABEL_CHARS = 22
"""A value axis's label longer than this is drawn on two lines, so it fits beside a plot's height."""
LEGEND_WIDTH = 120
"""Extra width of a small panel whose legend sits outside it, on the right."""
BOKEH = "bokeh"
ACTIVE_TOOLS = ["pan"]
"""Tools on at first: the mouse wheel scrolls the page; wheel zoom is a toolbar tool to switch on."""
LOG_TICK_MANTISSAS = (1, 2, 5)
"""Log axes tick at 1, 2 and 5 per decade (bokeh's default crowds 0.5 ... 0.9 into overlapping labels)."""


def _opts(element, **options):
    return element.opts(backend=BOKEH, **options)


def _attr(tasks: TaskSet | None, name: str, default: str = "") -> str:
    if tasks is None:
        return default
    return str(tasks.dataset.attrs.get(name, default) or default)


def _unit(unit: str, label: str) -> str | None:
    """A unit worth printing after ``label`` (none when empty or the label itself, as in "time (time)")."""
    return unit if unit and unit != label else None


def _time_dim(tasks: TaskSet | None) -> hv.Dimension:
    return hv.Dimension("time", label="time", unit=_unit(_attr(tasks, "time_unit"), "time"))


def _space_dim(tasks: TaskSet | None) -> hv.Dimension:
    return hv.Dimension("space", label="space", unit=_unit(_attr(tasks, "space_unit"), "length"))


def _latent_dim(tasks: TaskSet | None) -> hv.Dimension:
    """The latent's axis: its name, as the titles and the exports call it, with its unit where that adds to the name."""
    name, unit = _latent_name(tasks), _attr(tasks, "latent_unit")
    unit = unit if unit and unit.lower() not in name.lower() else None
    return hv.Dimension("latent", label=_fold(name, f" ({unit})" if unit else ""), unit=unit)


def _fold(label: str, suffix: str = "", width: int = AXIS_LABEL_CHARS) -> str:
    """``label`` on two lines when it and its ``suffix`` (the unit) are longer than ``width`` characters,
    broken at the space nearest the middle of both."""
    spaces = [k for k, c in enumerate(label) if c == " "]
    length = len(label) + len(suffix)
    if length <= width or not spaces:
        return label
    k = min(spaces, key=lambda k: abs(k - length / 2))
    return label[:k] + "\n" + label[k + 1:]


def _small_axis(dimension: hv.Dimension) -> str:
    """A small panel's axis label: the unit alone when there is one (the panel's title names the quantity)."""
    return dimension.unit or dimension.pprint_label


def _latent_name(tasks: TaskSet | None) -> str:
    return _attr(tasks, "latent_name", "latent force")


def _output_dim(name: str, tasks: TaskSet | None) -> hv.Dimension:
    """An output's value axis: its unit (the panel's title names the output)."""
    return hv.Dimension(f"output_{name}", label=_attr(tasks, "output_unit", "output"))


def _band(time, mean, std, kdim, vdim, colour, label):
    lower, upper = mean - BAND_Z * std, mean + BAND_Z * std
    area = hv.Area((time, lower, upper), kdims=[kdim], vdims=[vdim, hv.Dimension(f"{vdim.name}_upper")], label=f"{label} 95%")
    return _opts(area, color=colour, alpha=BAND_ALPHA, line_alpha=0)


def _mean(time, mean, kdim, vdim, colour, label):
    return _opts(hv.Curve((time, mean), kdims=[kdim], vdims=[vdim], label=label), color=colour, line_width=2)


def _truth(time, values, kdim, vdim, label="truth"):
    return _opts(hv.Curve((time, values), kdims=[kdim], vdims=[vdim], label=label), color=TRUTH_COLOUR, line_dash="dashed", line_width=2)


def _points(time, values, kdim, vdim, label="observed", errors=None):
    """Observations as points; with ``errors`` (one std per value), also bars of +- :data:`BAND_Z` std (a 95% interval)."""
    keep = np.isfinite(values)
    time, values = np.asarray(time)[keep], np.asarray(values)[keep]
    points = _opts(hv.Scatter((time, values), kdims=[kdim], vdims=[vdim], label=label),
                   color=OBSERVATION_COLOUR, size=6, line_color="white", tools=["hover"])
    if errors is None:
        return points
    spread = np.nan_to_num(np.asarray(errors, dtype=float)[keep], nan=0.0)
    bars = hv.ErrorBars((time, values, BAND_Z * spread), kdims=[kdim], vdims=[vdim, hv.Dimension(f"{vdim.name}_error", label="95% error")],
                        label=f"{label} ± 95% measurement error")
    return _opts(bars, color=OBSERVATION_COLOUR, line_width=1.5) * points


def _frame(overlay, title="", legend=True, legend_position="top_left", **options):
    return _opts(
        overlay, title=title, width=PLOT_WIDTH, height=PLOT_HEIGHT, show_grid=True,
        legend_position=legend_position, legend_opts={"background_fill_alpha": 0.6, "label_text_font_size": "8pt", "spacing": 0, "padding": 2},
        show_legend=legend, toolbar="right", active_tools=ACTIVE_TOOLS, **options,
    )


def _one_task(data: xr.DataArray, task: int) -> xr.DataArray:
    return data.isel(task=task)


def sample_tasks(tasks: TaskSet, n_tasks: int = 3, *, variable: str = "y") -> hv.Layout:
    """Show the outputs and the latent force of the first ``n_tasks`` tasks, one task per column.

    Time-only tasks give, per task, an overlay of every output over time (points,
    NaN left out) above a curve of the latent force.  Space x time tasks give,
    per task, images of the first output and of the latent force over
    (time, space), with one colour scale per quantity shared across tasks.

    Parameters
    ----------
    tasks : TaskSet
        ``y`` ``(task, output, [space,] time)``; ``f`` ``(task, [space,] time)`` if known.
    n_tasks : int
        Number of tasks shown (at most the number available).
    variable : {"y", "y_clean"}
        Which outputs to draw.

    Returns
    -------
    hv.Layout
        ``2 * n_tasks`` panels (``n_tasks`` if the latent force is unknown), one column per task.
    """
    count = min(int(n_tasks), tasks.n_tasks)
    time_dim = _time_dim(tasks)
    panels = []
    if tasks.is_spatial:
        outputs = tasks.dataset[variable].isel(task=slice(0, count), output=0).values
        output_range = _finite_range(outputs)
        latent = tasks.dataset["f"].isel(task=slice(0, count)).values if tasks.has_latent else None
        latent_range = _finite_range(latent) if latent is not None else None
        for k in range(count):
            panels.append(_field(tasks, outputs[k], _output_dim(tasks.output_names[0], tasks), output_range, f"task {k}: {tasks.output_names[0]}"))
        for k in range(count if latent is not None else 0):
            panels.append(_field(tasks, latent[k], _latent_dim(tasks), latent_range, _latent_name(tasks)))
        return hv.Layout(panels).cols(count)
    time = tasks.dataset["time"].values
    latent_dim = _latent_dim(tasks)
    for k in range(count):
        curves = []
        for j, name in enumerate(tasks.output_names):
            values = tasks.dataset[variable].isel(task=k, output=j).values
            dim = hv.Dimension("output", label=_attr(tasks, "output_unit", "output"))
            colour = PALETTE[j % len(PALETTE)]
            keep = np.isfinite(values)
            curves.append(_opts(hv.Curve((time[keep], values[keep]), kdims=[time_dim], vdims=[dim], label=name), color=colour, line_alpha=0.5))
            curves.append(_opts(hv.Scatter((time[keep], values[keep]), kdims=[time_dim], vdims=[dim], label=name), color=colour, size=4))
        panels.append(_opts(_frame(hv.Overlay(curves), f"task {k}: outputs", legend=(k == 0 and len(tasks.output_names) > 1)), **SMALL))
    for k in range(count if tasks.has_latent else 0):
        curve = _opts(hv.Curve((time, tasks.dataset["f"].isel(task=k).values), kdims=[time_dim], vdims=[latent_dim]), color=TRUTH_COLOUR, line_width=2)
        panels.append(_opts(_frame(hv.Overlay([curve]), _latent_name(tasks), legend=False), ylabel=_small_axis(latent_dim), **SMALL))
    return hv.Layout(panels).cols(count)


def _finite_range(values) -> tuple[float, float]:
    finite = np.asarray(values, dtype=float)
    finite = finite[np.isfinite(finite)]
    if finite.size == 0:
        return (0.0, 1.0)
    low, high = float(finite.min()), float(finite.max())
    return (low, high) if high > low else (low - 0.5, high + 0.5)


def _field(tasks, values, vdim, clim, title, cmap=FIELD_CMAP, space=None, time=None):
    """An image of ``values (space, time)`` with time on x and space on y."""
    space = tasks.dataset["space"].values if space is None else np.asarray(space)
    time = tasks.dataset["time"].values if time is None else np.asarray(time)
    image = hv.Image((time, space, np.asarray(values)), kdims=[_time_dim(tasks), _space_dim(tasks)], vdims=[vdim])
    return _opts(image, cmap=cmap, clim=clim, colorbar=True, title=title, width=IMAGE_SIZE + 70, height=IMAGE_SIZE, toolbar=None, tools=["hover"], active_tools=[])


def latent_posterior(
    result: xr.Dataset,
    task: int = 0,
    tasks: TaskSet | None = None,
    *,
    label: str = "DKLFM",
    colour: str = MODEL_COLOUR,
    title: str | None = None,
    suggestions=None,
) -> hv.Overlay:
    """Draw the latent force posterior of one time-only task: 95% band, mean, truth and observation times.

    Parameters
    ----------
    result : xarray.Dataset
        ``latent_mean``, ``latent_std`` ``(task, time)``.
    task : int
        Position of the task in ``result`` (and in ``tasks``).
    tasks : TaskSet, optional
        The tasks inferred from: gives units, the true force ``f`` ``(task, time)``
        (drawn dashed where it is known and finite) and the observation times
        (spikes along the bottom, where any output was observed).
    label, colour : str
        Legend entry and colour of the posterior.
    suggestions : pandas.DataFrame, optional
        Where to measure next (:func:`~dklfm_explore.design.next_measurements`: ``rank``, ``time``,
        ``variance_reduction``), marked by :func:`next_measurement_marks`.

    Returns
    -------
    hv.Overlay
        Layers in order: band (Area), mean (Curve), then truth (Curve) and
        observation times (Spikes) when ``tasks`` provides them, then the suggestions' marks.
    """
    name = title if title is not None else f"{_latent_name(tasks)} (task {task})"
    layers = _latent_layers(result, task, tasks, label, colour)
    if suggestions is not None and len(suggestions):
        low, high = _finite_range(np.concatenate([np.asarray(layer.dimension_values(dim), dtype=float) for layer in layers
                                                  if not isinstance(layer, hv.Spikes) for dim in layer.vdims]))
        layers += next_measurement_marks(suggestions, low, high, tasks)
    return _frame(hv.Overlay(layers), name, legend_position="right")


def next_measurement_marks(suggestions, low: float, high: float, tasks: TaskSet | None = None) -> list:
    """Vertical marks at the suggested next measurement times, from ``low`` to ``high``, each with its rank on top.

    Parameters
    ----------
    suggestions : pandas.DataFrame
        One row per suggestion (:func:`~dklfm_explore.design.next_measurements`): ``rank``, ``time``,
        ``variance_reduction`` (latent units squared).
    low, high : float
        The value range the marks span (the latent plot's).
    tasks : TaskSet, optional
        Gives the time unit.

    Returns
    -------
    list of HoloViews elements
        Spikes at the times (hover: time, rank, variance reduction) and Labels with the ranks.
    """
    time_dim = _time_dim(tasks)
    time = suggestions["time"].to_numpy(dtype=float)
    reduction = suggestions["variance_reduction"].to_numpy(dtype=float)
    rank = suggestions["rank"].to_numpy(dtype=int)
    reduction_dim = hv.Dimension("variance_reduction", label="variance reduction")
    spikes = hv.Spikes((time, reduction, rank), kdims=[time_dim], vdims=[reduction_dim, "rank"], label="measure next")
    labels = hv.Labels((time, np.full(time.shape, high), rank.astype(str)), kdims=[time_dim, hv.Dimension("latent")], vdims=["rank"])
    return [
        _opts(spikes, color=SUGGESTION_COLOUR, spike_length=high - low, position=low, line_width=2, line_dash="dashed",
              tools=["hover"]),
        _opts(labels, text_color=SUGGESTION_COLOUR, text_font_size="9pt", text_baseline="top", text_align="center", text_font_style="bold"),
    ]


def latent_posteriors(result: xr.Dataset, tasks: TaskSet | None = None, *, title: str | None = None) -> hv.Overlay:
    """Draw the latent force posteriors of all time-only tasks in one plot, one colour per task.

    Parameters
    ----------
    result : xarray.Dataset
        ``latent_mean``, ``latent_std`` ``(task, time)``; the legend names each task
        ``series <task coordinate>``.
    tasks : TaskSet, optional
        Gives the units and the latent force's name.

    Returns
    -------
    hv.Overlay
        A band (Area) and a mean (Curve) per task, in task order.
    """
    time_dim, latent_dim = _time_dim(tasks), _latent_dim(tasks)
    time = result["time"].values
    layers = []
    for k, name in enumerate(result["task"].values):
        mean, std = result["latent_mean"].isel(task=k).values, result["latent_std"].isel(task=k).values
        colour, label = PALETTE[k % len(PALETTE)], f"series {name}"
        layers += [_band(time, mean, std, time_dim, latent_dim, colour, label), _mean(time, mean, time_dim, latent_dim, colour, label)]
    name = title if title is not None else f"{_latent_name(tasks)}: all {result.sizes['task']} series"
    return _frame(hv.Overlay(layers), name, legend_position="right")


def _latent_layers(result, task, tasks, label, colour) -> list:
    time_dim, latent_dim = _time_dim(tasks), _latent_dim(tasks)
    time = result["time"].values
    mean = _one_task(result["latent_mean"], task).values
    std = _one_task(result["latent_std"], task).values
    layers = [_band(time, mean, std, time_dim, latent_dim, colour, label), _mean(time, mean, time_dim, latent_dim, colour, label)]
    if tasks is not None and tasks.has_latent:
        truth = tasks.dataset["f"].isel(task=task)
        keep = np.isfinite(truth.values)
        if keep.any():
            layers.append(_truth(truth["time"].values[keep], truth.values[keep], time_dim, latent_dim))
    if tasks is not None:
        observed = np.isfinite(tasks.dataset["y"].isel(task=task).values).any(axis=0)
        low, high = _finite_range(np.concatenate([np.asarray(layer.dimension_values(1)) for layer in layers] + [mean + BAND_Z * std]))
        spikes = hv.Spikes(tasks.dataset["time"].values[observed], kdims=[time_dim], label="observation times")
        layers.append(_opts(spikes, color=OBSERVATION_COLOUR, spike_length=SPIKE_FRACTION * (high - low), position=low, line_width=1.5))
    return layers


def output_posteriors(result: xr.Dataset, task: int = 0, tasks: TaskSet | None = None, *,
                      others: Mapping[str, xr.Dataset] | None = None, colours: Mapping[str, str] | None = None) -> hv.Layout:
    """Draw each output's posterior of one time-only task with its 95% band and the observations.

    Parameters
    ----------
    result : xarray.Dataset
        ``output_mean``, ``output_std`` ``(task, output, time)``.
    task : int
    tasks : TaskSet, optional
        Gives the observed ``y`` ``(task, output, time)`` (points) and units.
    others : mapping of label to xarray.Dataset, optional
        Other methods' results of the same task (``output_mean``, ``output_std`` on their own times),
        drawn as dashed means with their bands.
    colours : mapping of label to colour, optional
        The others' colours (default :data:`BASELINE_COLOUR`).

    Returns
    -------
    hv.Layout
        One Overlay per output: band, mean, the others' bands and means, observations (if ``tasks``; with
        error bars of 95% where ``tasks`` carry ``y_se`` ``(task, output, time)``, as the p53 data do);
        a legend on the first panel when there are others.
    """
    time_dim = _time_dim(tasks)
    time = result["time"].values
    panels = []
    for j, name in enumerate(result["output"].values):
        dim = _output_dim(str(name), tasks)
        mean = result["output_mean"].isel(task=task, output=j).values
        std = result["output_std"].isel(task=task, output=j).values
        colour = PALETTE[j % len(PALETTE)]
        layers = [_band(time, mean, std, time_dim, dim, colour, "DKLFM"), _mean(time, mean, time_dim, dim, colour, "DKLFM")]
        for label, other in (others or {}).items():
            other_mean = other["output_mean"].isel(task=task).sel(output=name).values
            other_std = other["output_std"].isel(task=task).sel(output=name).values
            other_time = other["time"].values
            other_colour = (colours or {}).get(label, BASELINE_COLOUR)
            layers += [_band(other_time, other_mean, other_std, time_dim, dim, other_colour, label),
                       _opts(_mean(other_time, other_mean, time_dim, dim, other_colour, label), line_dash="dashed")]
        if tasks is not None:
            observed = tasks.dataset["y"].isel(task=task, output=j)
            errors = tasks.dataset["y_se"].isel(task=task, output=j).values if "y_se" in tasks.dataset else None
            layers.append(_points(observed["time"].values, observed.values, time_dim, dim, errors=errors))
        if others and j == 0:
            panel = _frame(hv.Overlay(layers), str(name), legend_position="right")
            panels.append(_opts(panel, width=SMALL["width"] + LEGEND_WIDTH, height=SMALL["height"]))
        else:
            panels.append(_opts(_frame(hv.Overlay(layers), str(name), legend=False), **SMALL))
    return hv.Layout(panels).cols(3)


def extrapolation(
    result: xr.Dataset,
    task: int,
    tasks: TaskSet | None,
    train_window: tuple[float, float],
    *,
    label: str = "DKLFM",
) -> hv.Overlay:
    """Draw a latent posterior queried beyond the window the model was trained on.

    Parameters
    ----------
    result : xarray.Dataset
        ``latent_mean``, ``latent_std`` ``(task, time)`` on the wide query times.
    task : int
    tasks : TaskSet, optional
        The tasks over the wide window: truth ``f`` and observation times.
    train_window : (float, float)
        The training window, shaded and bounded by vertical lines.

    Returns
    -------
    hv.Overlay
        The layers of :func:`latent_posterior` preceded by the shaded window (VSpan); the axes are
        labelled explicitly, as the window's own dimensions (x, y) would otherwise name them.
    """
    start, stop = float(train_window[0]), float(train_window[1])
    window = _opts(hv.VSpan(start, stop, label="training window"), color="grey", alpha=WINDOW_ALPHA, line_alpha=0)
    layers = [window, *_latent_layers(result, task, tasks, label, MODEL_COLOUR)]
    time_dim, latent_dim = _time_dim(tasks), _latent_dim(tasks)
    return _frame(
        hv.Overlay(layers), f"extrapolation (task {task}); shaded: training window", legend_position="right",
        xlabel=time_dim.pprint_label, ylabel=latent_dim.pprint_label,
    )


def super_resolution(
    result: xr.Dataset,
    task: int,
    coarse: TaskSet,
    fine: TaskSet | None = None,
) -> hv.Layout:
    """Images of a super-resolution query on one space x time task.

    Parameters
    ----------
    result : xarray.Dataset
        ``latent_mean``, ``latent_std`` ``(task, space, time)`` on the fine grid.
    task : int
    coarse : TaskSet
        The observed coarse outputs ``y`` ``(task, output, space, time)``.
    fine : TaskSet, optional
        The true latent force ``f`` ``(task, space, time)`` on the fine grid.

    Returns
    -------
    hv.Layout
        Images in order: observed coarse output, true latent (if ``fine``),
        predicted latent mean, posterior std, absolute error (if ``fine``).
        Truth and prediction share one colour scale; std and error share another.
    """
    space, time = result["space"].values, result["time"].values
    mean = result["latent_mean"].isel(task=task).values
    std = result["latent_std"].isel(task=task).values
    latent_dim = _latent_dim(fine or coarse)
    observed = coarse.dataset["y"].isel(task=task, output=0).values
    panels = [_field(coarse, observed, _output_dim(coarse.output_names[0], coarse), _finite_range(observed), f"observed {coarse.output_names[0]} ({coarse.n_space} x {coarse.n_time})")]
    truth = fine.dataset["f"].isel(task=task).values if fine is not None and fine.has_latent else None
    latent_range = _finite_range(mean if truth is None else np.concatenate([mean.ravel(), truth.ravel()]))
    if truth is not None:
        panels.append(_field(fine, truth, latent_dim, latent_range, f"true ({len(space)} x {len(time)})", space=space, time=time))
    panels.append(_field(coarse, mean, latent_dim, latent_range, f"predicted {_latent_name(fine or coarse)}", space=space, time=time))
    error = np.abs(mean - truth) if truth is not None else None
    spread = _finite_range(np.concatenate([std.ravel(), error.ravel()]) if error is not None else std)
    spread = (0.0, spread[1])
    std_dim = hv.Dimension("latent_std", label="posterior std")
    panels.append(_field(coarse, std, std_dim, spread, "posterior std", cmap=ERROR_CMAP, space=space, time=time))
    if error is not None:
        error_dim = hv.Dimension("latent_error", label="absolute error")
        panels.append(_field(coarse, error, error_dim, spread, "absolute error", cmap=ERROR_CMAP, space=space, time=time))
    return hv.Layout(panels).cols(3)


def super_resolution_profiles(
    result: xr.Dataset,
    task: int,
    fine: TaskSet | None = None,
) -> hv.HoloMap:
    """Latent profiles over space, one frame per query time (a slider in the app and notebooks).

    Each frame overlays the predicted mean with its 95% band and the true latent
    on the fine grid (if ``fine``); the y range is shared across frames.

    Returns
    -------
    hv.HoloMap
        Keyed by ``time`` (the result's query times).
    """
    space_dim, latent_dim = _space_dim(fine), _latent_dim(fine)
    space, time = result["space"].values, result["time"].values
    mean = result["latent_mean"].isel(task=task).values
    std = result["latent_std"].isel(task=task).values
    truth = fine.dataset["f"].isel(task=task).values if fine is not None and fine.has_latent else None
    pieces = [mean - BAND_Z * std, mean + BAND_Z * std] + ([truth] if truth is not None else [])
    y_range = _finite_range(np.concatenate([p.ravel() for p in pieces]))
    frames = {}
    for k, t in enumerate(time):
        layers = [
            _band(space, mean[:, k], std[:, k], space_dim, latent_dim, MODEL_COLOUR, "DKLFM"),
            _mean(space, mean[:, k], space_dim, latent_dim, MODEL_COLOUR, "DKLFM"),
        ]
        if truth is not None:
            layers.append(_truth(space, truth[:, k], space_dim, latent_dim))
        frames[float(t)] = _frame(hv.Overlay(layers), f"{_latent_name(fine)} over space", ylim=y_range)
    return hv.HoloMap(frames, kdims=[_time_dim(fine)])


def super_resolution_profile(result: xr.Dataset, task: int, fine: TaskSet | None = None, time_index: int = 0) -> hv.Overlay:
    """The latent profile over space at one query time: the predicted mean, its 95% band and the truth (if ``fine``).

    The y range is that of the whole task (all times), so moving between times keeps the scale.

    Parameters
    ----------
    result : xarray.Dataset
        ``latent_mean``, ``latent_std`` ``(task, space, time)``.
    time_index : int
        Position of the time on the result's ``time`` axis.
    """
    frames = super_resolution_profiles(result, task, fine)
    key = float(result["time"].values[time_index])
    return _opts(frames[key], title=f"{_latent_name(fine)} over space at time {key:.3g}")


def training_curves(history: Sequence[Mapping], references: Mapping[str, float] | None = None) -> hv.Layout:
    """Training loss and validation latent MSE per epoch, with reference levels on the latter.

    Parameters
    ----------
    history : sequence of dict
        ``TrainingProgress`` records as dicts, with ``epoch``, ``loss`` and
        ``validation_latent_mse`` (None or NaN when not measured).
    references : mapping of str to float, optional
        Labelled levels of the validation MSE drawn as dotted horizontal lines (the prior mean's 1,
        another method's score).

    Returns
    -------
    hv.Layout
        Two Overlays: the loss curve (its y range from epoch 2 on, when there are more than two epochs, so
        the first epoch's large loss does not flatten the rest), and the validation MSE curve with its best
        epoch marked (a point) and one HLine per reference.  Both are empty before the first epoch.
    """
    epoch_dim = hv.Dimension("epoch")
    epochs = np.array([float(h["epoch"]) for h in history], dtype=float)
    loss = np.array([_number(h.get("loss")) for h in history], dtype=float)
    mse = np.array([_number(h.get("validation_latent_mse")) for h in history], dtype=float)
    loss_curve = _opts(hv.Curve((epochs, loss), kdims=[epoch_dim], vdims=["loss"], label="training loss"), color=MODEL_COLOUR, line_width=2)
    loss_options = {}
    later = loss[1:][np.isfinite(loss[1:])]
    if later.size > 1:
        low, high = _finite_range(later)
        pad = 0.05 * (high - low)
        loss_options["ylim"] = (low - pad, high + pad)
    keep = np.isfinite(mse)
    mse_dim = hv.Dimension("validation_latent_mse", label="validation latent MSE")
    mse_curve = _opts(hv.Curve((epochs[keep], mse[keep]), kdims=[epoch_dim], vdims=[mse_dim], label="validation"), color=OBSERVATION_COLOUR, line_width=2)
    best = [int(np.nanargmin(np.where(keep, mse, np.inf)))] if keep.any() else []
    best_point = _opts(hv.Scatter((epochs[best], mse[best]), kdims=[epoch_dim], vdims=[mse_dim], label="best"), color=TRUTH_COLOUR, size=9, marker="diamond")
    layers = [mse_curve, best_point]
    span = np.array([epochs.min(), epochs.max()]) if epochs.size else np.array([0.0, 1.0])
    for k, (name, level) in enumerate((references or {}).items()):
        line = hv.Curve((span, [float(level)] * 2), kdims=[epoch_dim], vdims=[mse_dim], label=f"{name}: {level:.2g}")
        layers.append(_opts(line, color=REFERENCE_COLOURS[k % len(REFERENCE_COLOURS)], line_dash="dotted", line_width=2))
    size = dict(width=PLOT_WIDTH * 3 // 4, height=PLOT_HEIGHT * 3 // 4)
    return hv.Layout([
        _opts(_frame(hv.Overlay([loss_curve]), "training loss (NLL per point)", legend=False, **loss_options), **size),
        _opts(_frame(hv.Overlay(layers), "validation latent MSE (standardised, log scale)", logy=True,
                     legend_position="right", xlabel="epoch", ylabel="validation latent MSE",
                     yticks=LogTicker(mantissas=LOG_TICK_MANTISSAS)), width=PLOT_WIDTH, height=size["height"]),
    ]).cols(2)


def _number(value) -> float:
    return float("nan") if value is None else float(value)
