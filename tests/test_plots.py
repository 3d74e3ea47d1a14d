"""The plot functions return HoloViews elements with the data, dims and layers they document."""

import holoviews as hv
import numpy as np
import pytest
import xarray as xr

from dklfm_explore import plots, simulate
from dklfm_explore.data import TaskSet

STD = 0.1
"""Posterior standard deviation of the hand-made results below."""
OFFSET = 0.05
"""Posterior mean minus truth in the hand-made results: a known, nonzero error."""


def result_from_truth(tasks, time=None, space=None):
    """An inference result in the contract's format whose mean is the truth shifted by OFFSET."""
    f = tasks.dataset["f"]
    y = tasks.dataset["y_clean"]
    if time is not None or space is not None:
        index = {"time": time} if time is not None else {}
        if space is not None:
            index["space"] = space
        f, y = f.interp(index), y.interp(index)
    return xr.Dataset(
        {
            "latent_mean": f + OFFSET,
            "latent_std": xr.full_like(f, STD),
            "output_mean": y,
            "output_std": xr.full_like(y, STD),
        },
        attrs={"infer_ms_per_task": 1.0, "device": "cpu", "time_mapping": "shift"},
    )


@pytest.fixture(scope="module")
def genes():
    tasks = simulate("transcription", 4, seed=1)
    y = tasks.dataset["y"].values.copy()
    y[0, 1, :5] = np.nan
    tasks.dataset["y"].values[:] = y
    return tasks


@pytest.fixture(scope="module")
def field():
    return simulate("reaction-diffusion", 2, grid=(9, 9), seed=2)


def test_sample_tasks_time_only_has_outputs_and_latent(genes):
    layout = plots.sample_tasks(genes, n_tasks=3)
    assert isinstance(layout, hv.Layout)
    assert len(layout) == 6
    outputs, latent = layout[0], layout[3]
    assert len(outputs) == 2 * genes.n_outputs
    np.testing.assert_allclose(latent.Curve.I.dimension_values(1), genes.dataset["f"].isel(task=0).values)
    assert latent.Curve.I.kdims[0].unit == "h"
    first_curve = outputs.values()[0]
    assert first_curve.label == "DDB2"
    np.testing.assert_allclose(first_curve.dimension_values(1), genes.dataset["y"].isel(task=0, output=0).values)


def test_sample_tasks_drops_missing_points(genes):
    outputs = plots.sample_tasks(genes, n_tasks=1)[0]
    scatter = outputs.values()[3]
    assert len(scatter) == genes.n_time - 5


def test_sample_tasks_spatial_shares_colour_scale(field):
    layout = plots.sample_tasks(field, n_tasks=2)
    assert len(layout) == 4
    images = list(layout)
    assert all(isinstance(image, hv.Image) for image in images)
    assert images[0].opts.get().kwargs["clim"] == images[1].opts.get().kwargs["clim"]
    assert images[2].opts.get().kwargs["clim"] == images[3].opts.get().kwargs["clim"]
    latent = field.dataset["f"].isel(task=1).values
    np.testing.assert_allclose(images[3].dimension_values(2, flat=False), latent, atol=1e-12)


def test_latent_posterior_layers_and_band(genes):
    result = result_from_truth(genes)
    overlay = plots.latent_posterior(result, 2, genes)
    band, mean, truth, spikes = overlay.values()
    assert (type(band), type(mean), type(truth), type(spikes)) == (hv.Area, hv.Curve, hv.Curve, hv.Spikes)
    f = genes.dataset["f"].isel(task=2).values
    np.testing.assert_allclose(mean.dimension_values(1), f + OFFSET)
    np.testing.assert_allclose(band.dimension_values(2) - band.dimension_values(1), 2 * plots.BAND_Z * STD)
    np.testing.assert_allclose(truth.dimension_values(1), f)
    assert len(spikes) == genes.n_time


def test_next_measurements_are_marked_over_the_whole_latent_range_with_their_ranks(genes):
    import pandas as pd

    result = result_from_truth(genes)
    suggestions = pd.DataFrame({"rank": [1, 2], "time": [3.5, 7.25], "variance_reduction": [0.02, 0.005],
                                "remaining_variance": [0.1, 0.095]})
    layers = plots.latent_posterior(result, 1, genes, suggestions=suggestions).values()
    marks, labels = layers[-2:]
    assert (type(marks), type(labels), marks.label) == (hv.Spikes, hv.Labels, "measure next")
    np.testing.assert_allclose(marks.dimension_values("time"), [3.5, 7.25])
    np.testing.assert_allclose(marks.dimension_values("variance_reduction"), [0.02, 0.005])
    assert list(labels.dimension_values("rank")) == ["1", "2"]
    band = layers[0]
    low, high = band.dimension_values(1).min(), band.dimension_values(2).max()
    options = marks.opts.get().kwargs
    np.testing.assert_allclose([options["position"], options["position"] + options["spike_length"]], [low, high])
    np.testing.assert_allclose(labels.dimension_values(1), high)
    assert len(plots.latent_posterior(result, 1, genes, suggestions=suggestions.iloc[:0])) == len(layers) - 2


def test_latent_posterior_without_tasks_has_two_layers(genes):
    overlay = plots.latent_posterior(result_from_truth(genes), 0)
    assert len(overlay) == 2


def test_observation_times_skip_fully_missing_times(genes):
    partial = genes.isel([0])
    partial.dataset["y"].values[0, :, :4] = np.nan
    spikes = plots.latent_posterior(result_from_truth(partial), 0, partial).values()[-1]
    np.testing.assert_allclose(spikes.dimension_values(0), genes.dataset["time"].values[4:])


def test_output_posteriors_one_panel_per_output(genes):
    layout = plots.output_posteriors(result_from_truth(genes), 0, genes)
    assert len(layout) == genes.n_outputs
    band, mean, points = layout[1].values()
    assert isinstance(points, hv.Scatter)
    assert len(points) == genes.n_time - 5
    assert mean.vdims[0].pprint_label == "mRNA (a.u.)"  # the unit alone: the title names the output
    assert layout[1].opts.get().kwargs["title"] == "BIK"


def test_extrapolation_shades_training_window(genes):
    overlay = plots.extrapolation(result_from_truth(genes), 0, genes, (0.0, 6.0))
    window = overlay.values()[0]
    assert isinstance(window, hv.VSpan)
    assert window.data == [0.0, 6.0]
    assert len(overlay) == 5
    options = overlay.opts.get().kwargs
    assert options["xlabel"].startswith("time") and options["ylabel"] not in ("y", "")


def test_latent_posteriors_draws_every_task(genes):
    result = result_from_truth(genes)
    overlay = plots.latent_posteriors(result, genes)
    assert len(overlay) == 2 * genes.n_tasks
    names = [f"series {name}" for name in result["task"].values]
    assert [layer.label for layer in overlay.values()[1::2]] == names
    np.testing.assert_allclose(overlay.values()[1].dimension_values(1), result["latent_mean"].isel(task=0).values)


def test_super_resolution_grids(field):
    fine_time = np.linspace(0, 1, 17)
    fine_space = np.linspace(0, 1, 17)
    result = result_from_truth(field, time=fine_time, space=fine_space)
    truth = simulate("reaction-diffusion", 2, grid=(17, 17), seed=2)
    layout = plots.super_resolution(result, 1, field, truth)
    assert len(layout) == 5
    observed, true, predicted, std, error = layout
    assert observed.dimension_values(2, flat=False).shape == (9, 9)
    assert predicted.dimension_values(2, flat=False).shape == (17, 17)
    assert true.opts.get().kwargs["clim"] == predicted.opts.get().kwargs["clim"]
    assert std.opts.get().kwargs["clim"] == error.opts.get().kwargs["clim"]
    np.testing.assert_allclose(std.dimension_values(2), STD)
    expected = np.abs(result["latent_mean"].isel(task=1).values - truth.dataset["f"].isel(task=1).values)
    np.testing.assert_allclose(error.dimension_values(2, flat=False), expected)


def test_super_resolution_without_truth_has_three_images(field):
    layout = plots.super_resolution(result_from_truth(field), 0, field)
    assert len(layout) == 3


def test_super_resolution_profiles_one_frame_per_time(field):
    result = result_from_truth(field)
    frames = plots.super_resolution_profiles(result, 0, field)
    assert isinstance(frames, hv.HoloMap)
    assert len(frames) == field.n_time
    frame = frames[float(field.dataset["time"].values[3])]
    band, mean, truth = frame.values()
    np.testing.assert_allclose(truth.dimension_values(1), field.dataset["f"].isel(task=0, time=3).values)
    np.testing.assert_allclose(mean.dimension_values(1), field.dataset["f"].isel(task=0, time=3).values + OFFSET)
    y_range = frames.last.opts.get().kwargs["ylim"]
    assert y_range == frame.opts.get().kwargs["ylim"]


def test_training_curves_marks_best_epoch():
    history = [
        {"epoch": 1, "loss": 3.0, "validation_latent_mse": 0.5},
        {"epoch": 2, "loss": 2.0, "validation_latent_mse": 0.2},
        {"epoch": 3, "loss": 1.5, "validation_latent_mse": 0.3},
        {"epoch": 4, "loss": 1.2, "validation_latent_mse": None},
    ]
    loss, validation = plots.training_curves(history)
    np.testing.assert_allclose(loss.values()[0].dimension_values(1), [3.0, 2.0, 1.5, 1.2])
    curve, best = validation.values()
    assert len(curve) == 3
    assert best.dimension_values(0).tolist() == [2.0]


def test_training_curves_empty_history():
    loss, validation = plots.training_curves([])
    assert len(loss.values()[0]) == 0
    assert len(validation.values()[1]) == 0


def test_training_curves_draw_reference_levels_and_skip_the_first_loss_in_the_range():
    history = [{"epoch": k, "loss": loss, "validation_latent_mse": 0.5 / k} for k, loss in enumerate([50.0, 2.0, 1.0, 1.5], start=1)]
    loss, validation = plots.training_curves(history, references={"prior mean": 1.0, "per-task LFM": 0.11})
    assert loss.opts.get().kwargs["ylim"] == pytest.approx((1.0 - 0.05, 2.0 + 0.05))
    curve, best, prior, per_task = validation.values()
    assert prior.dimension_values(1).tolist() == [1.0, 1.0] and prior.dimension_values(0).tolist() == [1.0, 4.0]
    assert per_task.label == "per-task LFM: 0.11"


def test_plots_leave_the_mouse_wheel_to_the_page(genes):
    result = result_from_truth(genes)
    for plot in (plots.latent_posterior(result, 0, genes), plots.training_curves([]).values()[0]):
        assert plot.opts.get().kwargs["active_tools"] == ["pan"]


def test_axis_labels_do_not_repeat_a_unit_equal_to_the_name(field):
    image = plots.sample_tasks(field, 1).values()[0]
    assert [d.pprint_label for d in image.kdims] == ["time", "space"]


def test_output_posteriors_draw_another_method_beside(genes):
    result = result_from_truth(genes)
    other = result.assign(output_mean=result["output_mean"] + 1.0)
    first = plots.output_posteriors(result, 0, genes, others={"per-task LFM": other}).values()[0]
    band, mean, other_band, other_mean, points = first.values()
    np.testing.assert_allclose(other_mean.dimension_values(1), mean.dimension_values(1) + 1.0)
    assert other_mean.label == "per-task LFM" and first.opts.get().kwargs["show_legend"]


def test_super_resolution_profile_at_one_time(field):
    result = result_from_truth(field)
    profile = plots.super_resolution_profile(result, 1, field, 4)
    band, mean, truth = profile.values()
    np.testing.assert_allclose(mean.dimension_values(1), field.dataset["f"].isel(task=1, time=4).values + OFFSET)
    assert profile.opts.get().kwargs["title"] == f"protein production rate u(x, t) over space at time {field.dataset['time'].values[4]:.3g}"


def test_the_latent_is_called_by_its_name_on_axes_and_titles(genes):
    from dklfm_explore.datasets import load_p53

    result = result_from_truth(genes)
    posterior = plots.latent_posterior(result, 0, genes)
    assert posterior.opts.get().kwargs["title"] == "transcription factor activity (task 0)"
    assert posterior.Curve.DKLFM.vdims[0].pprint_label == "transcription factor\nactivity (a.u.)"  # two lines: it fits the axis
    panels = plots.sample_tasks(genes, 1).values()
    assert panels[1].opts.get().kwargs["title"] == "transcription factor activity"  # under "task 0: outputs", in its column
    assert panels[1].opts.get().kwargs["ylabel"] == "a.u."  # a small panel's axis: the unit, the title names it
    p53 = load_p53("5Gy")
    axis = plots._latent_dim(p53)
    assert axis.pprint_label == "p53 activity"  # no unit known: the name alone, never "latent force"
    renamed = TaskSet(genes.dataset.assign_attrs(latent_name="predator population", latent_unit="population"))
    assert plots._latent_dim(renamed).pprint_label == "predator population"  # a unit the name already says is not repeated


def test_plots_render_with_bokeh(genes, field):
    from bokeh.models import BoxAnnotation, GlyphRenderer

    renderer = hv.renderer("bokeh")
    result = result_from_truth(genes)
    for element in (
        plots.sample_tasks(genes),
        plots.latent_posterior(result, 0, genes),
        plots.output_posteriors(result, 0, genes),
        plots.extrapolation(result, 0, genes, (0, 6)),
        plots.super_resolution(result_from_truth(field), 0, field, field),
        plots.training_curves([{"epoch": 1, "loss": 1.0, "validation_latent_mse": 0.1}]),
    ):
        leaves = element.traverse(lambda leaf: leaf, [hv.Element])
        spans = [leaf for leaf in leaves if isinstance(leaf, hv.VSpan)]
        state = renderer.get_plot(element).state
        assert len(list(state.select({"type": GlyphRenderer}))) == len(leaves) - len(spans), type(element).__name__
        assert len(list(state.select({"type": BoxAnnotation}))) >= len(spans)


NESTED_BRACKETS = r"\([^()]*\([^()]*\)\)"
"""An axis label like "DDB2 (mRNA (a.u.))": a unit in brackets inside a label in brackets."""


@pytest.mark.parametrize("system", ["transcription", "lotka-volterra", "reaction-diffusion"])
def test_every_axis_label_reads_once_and_every_figure_can_be_saved(system):
    import re

    from bokeh.models import Axis, SaveTool

    tasks = simulate(system, 2, seed=0)
    result = result_from_truth(tasks)
    elements = [plots.sample_tasks(tasks, 2)]
    if tasks.is_spatial:
        elements += [plots.super_resolution(result, 0, tasks, tasks), plots.super_resolution_profile(result, 0, tasks, 1)]
    else:
        elements += [plots.latent_posterior(result, 0, tasks), plots.output_posteriors(result, 0, tasks),
                     plots.extrapolation(result, 0, tasks, (0.0, float(tasks.time[-1]) / 2))]
    for element in elements:
        state = hv.renderer("bokeh").get_plot(element).state
        labels = [axis.axis_label for axis in state.select({"type": Axis}) if axis.axis_label]
        assert labels, type(element).__name__
        for label in labels:
            assert not re.fullmatch(r"(.+) \(\1\)", label) and not re.search(NESTED_BRACKETS, label), label
        assert state.toolbar_location is not None, type(element).__name__  # a layout's one toolbar saves all its figures
        assert any(isinstance(tool, SaveTool) for tool in state.toolbar.tools), type(element).__name__
