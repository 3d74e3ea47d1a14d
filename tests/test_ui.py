"""Dashboard view models without a browser: set parameters, trigger actions, check state and elements."""

import logging
import threading
import sys

import holoviews as hv
import numpy as np
import param
import pytest
import xarray as xr

from dklfm_explore import simulate
from dklfm_explore.ui import Explorer, explorer
from dklfm_explore.ui.base import INTERNAL_ERROR, Section
from dklfm_explore.ui.session import Session
from dklfm_explore.ui.system import PREVIEW_TASKS, SystemView, settings_for
from dklfm_explore.ui.taskset import TaskSetView, split_tasks
from dklfm_explore.ui.training import FROM_SIMULATOR, FROM_TASK_SET, TrainingView, describe
from dklfm_explore.ui.results import latent_mse, refine_mesh
from dklfm_explore.ui.upload import YourDataView, result_table

JOB_TIMEOUT_S = 60
"""Background jobs in these tests take well under a second; the limit only stops a hung test."""


@pytest.fixture(scope="module")
def app():
    return Explorer()


def test_explorer_opens_on_a_default_task_set(app):
    tasks = app.session.tasks
    assert tasks.system_name == "transcription"
    assert tasks.n_tasks == 200
    assert app.session.train_tasks.n_tasks + app.session.test_tasks.n_tasks == 200
    assert app.session.test_tasks.n_tasks == 20
    assert isinstance(app.taskset._plot.object, hv.Layout)
    assert isinstance(app.system._preview_pane.object, hv.Layout)


def test_inference_without_model_offers_training():
    app = Explorer()
    app.session.model = None
    app.show("Inference")
    assert app.inference._needs_model.visible
    assert "train a model (up to 60 s on CPU)" in app.inference._needs_model[0].object
    assert app.inference.result is None


def test_each_page_builds_its_own_state():
    first, second = Explorer(), Explorer()
    assert first.session is not second.session
    first.system.system = "lotka-volterra"
    assert second.system.system == "transcription"
    assert type(first.system.settings) is not type(second.system.settings)


def test_explorer_returns_a_template():
    import panel as pn

    assert isinstance(explorer(), pn.template.BaseTemplate)


def test_settings_are_generated_from_parameter_specs():
    settings = settings_for("reaction-diffusion")
    assert {"sensitivity", "decay_rate", "diffusion"} <= set(settings.param)
    assert settings.diffusion == (0.001, 0.1)
    assert settings.space_lengthscale == (0.1, 0.4)
    assert (settings.n_space, settings.n_points) == (21, 21)
    assert settings.spec().grid == (21, 21)
    assert "space_lengthscale" in settings.visible_names()
    assert "period" not in settings.visible_names()
    settings.kernel = "periodic"
    assert "period" in settings.visible_names()


def test_per_output_ranges_scale_each_outputs_typical_value():
    settings = settings_for("transcription")
    assert settings.decay_rate == (0.6, 1.4)
    settings.decay_rate = (1.0, 2.0)
    low, high = settings.spec().ranges["decay_rate"]
    typical = np.array([0.2829, 0.3720, 0.3617, 0.8, 0.3573])
    np.testing.assert_allclose(low, typical, rtol=1e-6)
    np.testing.assert_allclose(high, 2 * typical, rtol=1e-6)


def test_changing_a_setting_redraws_the_preview():
    view = SystemView(Session())
    view.system = "transcription-linear"
    assert view.preview.system_name == "transcription-linear"
    assert view.preview.n_tasks == PREVIEW_TASKS
    view.settings.sensitivity = (2.0, 2.5)
    values = view.preview.dataset["sensitivity"].values
    typical = np.array([0.9075, 0.9748, 0.9785, 1.0, 0.9680])
    assert np.all(values >= 2.0 * typical - 1e-9) and np.all(values <= 2.5 * typical + 1e-9)
    view.settings.n_points = 12
    assert view.preview.n_time == 12
    assert "softplus" not in view._equation.object


def test_bad_setting_shows_message_and_keeps_working():
    view = SystemView(Session())
    view.system = "lotka-volterra"
    view.settings.growth_rate = (1.0, 0.5)
    assert view.message_kind == "danger"
    assert "growth_rate" in view.message and "low" in view.message
    view.settings.growth_rate = (0.5, 1.0)
    assert view.message == ""
    assert view.preview.system_name == "lotka-volterra"


def test_guard_logs_internal_errors(caplog):
    section = Section(Session())
    with caplog.at_level(logging.ERROR):
        assert section.guard(lambda: 1 / 0) is None
    assert section.message == INTERNAL_ERROR
    assert "ZeroDivisionError" in caplog.text


def make_taskset_view(system="transcription-linear", n_tasks=30):
    session = Session()
    system_view = SystemView(session, system=system)
    system_view.settings.n_tasks = n_tasks
    return session, TaskSetView(session, system_view)


def test_generate_runs_in_background_and_splits():
    session, view = make_taskset_view(n_tasks=30)
    seen = []
    view.controls.param.watch(lambda event: seen.append(event.new), "progress")
    view.generate()
    view.job.join(JOB_TIMEOUT_S)
    assert not view.running
    assert session.tasks.n_tasks == 30 and session.tasks.system_name == "transcription-linear"
    assert (session.train_tasks.n_tasks, session.test_tasks.n_tasks) == (27, 3)
    assert seen[-1] == 100
    assert view.message_kind == "success"
    assert "30 tasks" in view._summary.object


def test_cancel_keeps_the_previous_task_set():
    session, view = make_taskset_view(n_tasks=5000)
    view.generate_now()
    before = session.tasks
    view.generate()
    view.job.cancel()
    view.job.join(JOB_TIMEOUT_S)
    assert "cancelled" in view.message
    assert session.tasks is before
    assert not view.running and not view.generate_button.disabled


def test_save_and_load_task_set_round_trip():
    session, view = make_taskset_view(n_tasks=10)
    view.generate_now()
    saved = view._netcdf_bytes().getvalue()
    original = session.tasks
    other_session, other = make_taskset_view("transcription")
    other.load_bytes(saved, "tasks.nc")
    np.testing.assert_array_equal(other_session.tasks.dataset["y"].values, original.dataset["y"].values)
    assert other_session.tasks.system_name == "transcription-linear"


def test_bad_task_set_upload_shows_message():
    session, view = make_taskset_view()
    view.generate_now()
    before = session.tasks
    view.upload.filename = "broken.nc"
    view.upload.value = b"this is not netCDF"
    assert view.message_kind == "danger"
    assert "broken.nc is not a readable netCDF file" in view.message
    assert session.tasks is before


def test_split_needs_two_tasks():
    tasks = simulate("transcription-linear", 1, seed=0)
    with pytest.raises(ValueError, match="at least 2 tasks"):
        split_tasks(tasks)


def test_training_without_tasks_says_what_to_do():
    view = TrainingView(Session())
    view.train()
    assert "generate one" in view.message
    assert not view.running


def test_device_choices_are_available_devices():
    view = TrainingView(Session())
    assert "cpu" in view.param.device.objects
    assert view.device in view.param.device.objects


def test_upload_with_wrong_suffix_keeps_app_working():
    session = Session()
    view = YourDataView(session, TrainingView(session))
    view.upload.param.update(filename="data.xlsx", value=b"\x00\x01")
    assert view.message_kind == "danger"
    assert "upload a .csv or a .nc file" in view.message
    assert view.tasks is None and view.download_csv.disabled


def test_result_table_has_one_row_per_task_and_time():
    time = np.linspace(0, 1, 4)
    result = xr.Dataset(
        {
            "latent_mean": (("task", "time"), np.arange(8.0).reshape(2, 4)),
            "latent_std": (("task", "time"), np.ones((2, 4))),
            "output_mean": (("task", "output", "time"), np.arange(16.0).reshape(2, 2, 4)),
            "output_std": (("task", "output", "time"), np.full((2, 2, 4), 0.5)),
        },
        coords={"task": [0, 1], "output": ["a", "b"], "time": time},
    )
    table = result_table(result)
    assert list(table.columns) == ["task", "time", "latent_mean", "latent_std", "a_mean", "a_std", "b_mean", "b_std"]
    assert len(table) == 8
    row = table[(table.task == 1) & (table.time == time[2])].iloc[0]
    assert (row.latent_mean, row.a_mean, row.b_mean) == (6.0, 10.0, 14.0)


def test_importing_the_package_does_not_load_panel():
    import subprocess

    code = "import sys, dklfm_explore; print('panel' in sys.modules, 'holoviews' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]


def test_train_then_infer_a_test_task_with_exact_baseline():
    app = Explorer()
    app.show("Inference")
    app.system.system = "transcription-linear"
    app.system.settings.n_tasks = 40
    app.taskset.generate_now()
    app.training.param.update(source=FROM_TASK_SET, epochs=2)
    app.training.train()
    app.training.job.join(JOB_TIMEOUT_S)
    assert app.session.model is not None, app.training.message
    assert len(app.training.history) >= 1
    app.inference.first_job.join(JOB_TIMEOUT_S)
    assert app.inference.result is not None
    assert app.inference.result["latent_mean"].dims == ("task", "time")
    assert isinstance(app.inference.latent_plot(), hv.Overlay)
    assert "latent MSE" in app.inference._metrics.object
    app.inference.baseline = True
    app.inference.first_job.join(JOB_TIMEOUT_S)
    app.inference.job.join(JOB_TIMEOUT_S)
    assert app.inference.baseline_result is not None, app.inference.message
    assert isinstance(app.inference.latent_plot(), hv.Layout) and len(app.inference.latent_plot()) == 2
    assert "exact LFM (true parameters)" in app.inference._metrics.object
    saved = app.training._model_bytes().getvalue()
    other = Explorer()
    other.training.load_bytes(saved, "dklfm.pt")
    assert other.session.model.system_name == "transcription-linear"


def test_upload_reads_measurements_and_asks_for_a_model(app):
    from dklfm_explore.io import example_csv

    view = app.your_data
    view.load_bytes(example_csv("transcription").encode(), "example.csv")
    assert view.tasks.n_tasks == 2 and view.tasks.output_names == list(app.session.train_tasks.output_names)
    assert view.tasks.has_latent


def test_upload_without_a_model_asks_for_one():
    from dklfm_explore.measurements import example_csv

    app = Explorer()
    app.session.model = None
    view = app.your_data
    view.load_bytes(example_csv("transcription").encode(), "example.csv")
    assert "train a model" in view._needs_model[0].object
    assert view.result is None and view.download_csv.disabled


def test_bad_csv_upload_shows_one_sentence_and_keeps_working(app):
    from dklfm_explore.io import example_csv

    view = app.your_data
    view.upload.param.update(filename="bad.csv", value=b"when,what\n1,2\n")
    if view.confirm.pending:  # the module's app may hold an earlier test's upload
        view.confirm.answer(True)
    assert view.message_kind == "danger"
    assert "bad.csv" in view.message and view.message.count(". ") == 0
    assert view.tasks is None
    view.load_bytes(example_csv("transcription").encode(), "example.csv")
    assert view.message_kind == "success"


def test_bundled_p53_data_loads(app):
    tasks = app.your_data.load_p53()
    assert (tasks.n_tasks, tasks.n_outputs, tasks.n_time) == (3, 5, 7)
    assert app.your_data.message_kind == "success"


def test_upload_example_then_bad_file():
    from dklfm_explore.io import example_csv

    app = Explorer()
    app.system.settings.n_tasks = 40
    app.taskset.generate_now()
    app.training.param.update(source=FROM_TASK_SET, epochs=1)
    app.training.train()
    app.training.job.join(JOB_TIMEOUT_S)
    view = app.your_data
    view.load_bytes(example_csv().encode(), "example.csv")
    assert view.result is not None
    assert isinstance(view._latent.object, hv.Overlay)
    table = result_table(view.result)
    assert {"time", "latent_mean", "latent_std"} <= set(table.columns)
    view.upload.param.update(filename="bad.csv", value=b"when,what\n1,2\n")
    assert view.result is not None and "Replace example.csv and its results with bad.csv?" == view.confirm.text
    view.confirm.answer(True)
    assert view.message_kind == "danger" and view.message
    assert view.result is None
    view.load_bytes(example_csv().encode(), "example.csv")
    assert view.result is not None


def trained_app(system, n_tasks=30, epochs=1, **settings):
    app = Explorer()
    app.system.system = system
    app.system.settings.param.update(n_tasks=n_tasks, **settings)
    app.taskset.generate_now()
    app.training.param.update(source=FROM_TASK_SET, epochs=epochs)
    app.training.train()
    app.training.job.join(JOB_TIMEOUT_S)
    assert app.session.model is not None, app.training.message
    return app


def test_extrapolation_view_queries_beyond_the_trained_window():
    app = trained_app("transcription-linear")
    view = app.extrapolation
    view.factor = 1.5
    view.run()
    assert view.result is not None, view.message
    times = view.result["time"].values
    assert times[-1] == pytest.approx(12.0 * 44 / 29) and len(times) == 45
    np.testing.assert_allclose(view.observed.dataset["time"].values, app.session.tasks.dataset["time"].values)
    overlay = view.plot()
    assert isinstance(overlay.values()[0], hv.VSpan)
    assert "beyond it" in view._metrics.object
    view.task = 2
    assert "task 2" in view.plot().opts.get().kwargs["title"]


def test_super_resolution_view_infers_on_the_fine_grid():
    app = trained_app("reaction-diffusion", n_space=9, n_points=9)
    view = app.super_resolution
    view.run()
    assert view.result is not None, view.message
    assert (view.coarse.n_space, view.coarse.n_time) == (9, 9)
    assert dict(view.result["latent_mean"].sizes) == {"task": 3, "space": 17, "time": 17}
    assert len(view.grids_plot()) == 5
    assert view._time_widget.visible and view._time_widget.end == 16
    first = view.detail_plot()
    with param.edit_constant(view._time_widget):
        view._time_widget.value = view._time_widget.value_throttled = 16
    assert view.time_index == 16
    title = view.detail_plot().opts.get().kwargs["title"]
    assert title == f"protein production rate u(x, t) over space at time {view.result['time'].values[16]:.3g}"
    curve = view.detail_plot().Curve.DKLFM
    np.testing.assert_allclose(curve.dimension_values(1), view.result["latent_mean"].isel(task=0, time=16).values)
    assert first.opts.get().kwargs["title"] != title


def test_refine_mesh_splits_each_interval_and_keeps_the_mesh():
    times = np.array([0.0, 1.0, 3.0])
    dense = refine_mesh(times, 3)
    np.testing.assert_allclose(dense, [0.0, 1 / 3, 2 / 3, 1.0, 5 / 3, 7 / 3, 3.0])
    assert np.array_equal(dense[::3], times)


def bundled_model_present() -> bool:
    from dklfm_explore.datasets import PRETRAINED_MODELS

    return PRETRAINED_MODELS["transcription"].path.is_file()


needs_bundled = pytest.mark.skipif(not bundled_model_present(), reason="no bundled transcription model in this checkout")


@needs_bundled
def test_model_tabs_compute_once_when_first_shown():
    app = Explorer()
    views = {"Inference": app.inference, "Extrapolation": app.extrapolation, "Super-resolution": app.super_resolution}
    assert all(view.result is None and not view.shown for view in views.values())
    for name, view in views.items():
        app.show(name)
        view.first_job.join(JOB_TIMEOUT_S)
        assert view.result is not None, (name, view.message)
    first = app.super_resolution.result
    app.show("System")
    app.show("Super-resolution")
    assert app.super_resolution.result is first and not app.super_resolution.first_job.running
    for name, section in app.sections.items():
        app.show(name)
        assert section.message_kind != "danger", (name, section.message)


@needs_bundled
def test_a_model_tab_shown_without_a_model_computes_when_shown_again():
    app = Explorer()
    app.session.model = None
    app.show("Extrapolation")
    assert app.extrapolation.result is None and app.extrapolation._needs_model.visible
    app.training.load_bundled("transcription")
    app.show("System")
    app.show("Extrapolation")
    app.extrapolation.first_job.join(JOB_TIMEOUT_S)
    assert app.extrapolation.result is not None, app.extrapolation.message


@needs_bundled
def test_time_super_resolution_infers_on_a_three_times_denser_mesh(app):
    view = app.super_resolution
    view.run()
    assert view.result is not None, view.message
    observed = app.session.tasks.dataset["time"].values
    assert (view.coarse.n_time, view.fine.n_time) == (30, 88)
    np.testing.assert_array_equal(view.coarse.dataset["time"].values, observed)
    np.testing.assert_array_equal(view.result["time"].values, view.fine.dataset["time"].values)
    np.testing.assert_array_equal(view.coarse.dataset["y"].values, view.fine.dataset["y"].values[..., ::3])
    assert latent_mse(view.result, view.fine, 0) < 0.1  # the bundled model's validation latent MSE is 0.10
    overlay = view.grids_plot()
    assert isinstance(overlay, hv.Overlay) and "88 times from 30 observed" in overlay.opts.get().kwargs["title"]
    assert len(view.detail_plot()) == 5
    assert "30 times, inferred on 88 times" in view.message


@needs_bundled
def test_bundled_p53_data_is_inferred_with_the_bundled_model(app):
    view = app.your_data
    view.load_p53()
    assert view.result is not None, view.message
    assert dict(view.result["latent_mean"].sizes) == {"task": 3, "time": 25}
    np.testing.assert_array_equal(view.result["time"].values[::4], view.tasks.dataset["time"].values)
    assert np.all(np.isfinite(view.result["latent_mean"].values))
    assert len(view._all.object) == 6
    assert view._all.object.opts.get().kwargs["title"] == "p53 activity: all 3 series"
    assert view._summary.object.startswith("Inferred the p53 activity of 3 series: ")


@needs_bundled
def test_bundled_model_opens_the_inference_view():
    app = Explorer()
    assert app.session.model.system_name == "transcription"
    assert "bundled pretrained model" in app.session.model_origin
    app.show("Inference")
    app.inference.first_job.join(JOB_TIMEOUT_S)
    assert app.inference.result is not None and not app.inference._needs_model.visible
    assert len(app.training.history) == len(app.session.model.history) > 0
    assert "stopped: time limit reached" in app.training._status.object
    text, learned = describe(app.session, app.session.models[0])
    assert learned is True and text.startswith("training verdict: learned: latent MSE 0.079")


def test_a_worse_model_is_kept_but_not_used_and_one_click_reverts():
    app = Explorer()
    bundled = app.session.model
    app.system.settings.n_tasks = 40
    app.taskset.generate_now()
    app.training.param.update(source=FROM_TASK_SET, epochs=1, max_seconds=5)
    app.training.train()
    app.training.job.join(JOB_TIMEOUT_S)
    first, second = app.session.models
    assert first.model is bundled and second.model is not bundled
    new, old = app.session.evaluation(second), app.session.evaluation(first)
    assert new.n_tasks == old.n_tasks == app.session.test_tasks.n_tasks == 4
    # one epoch on 36 tasks against the bundled model's 6 minutes on fresh tasks: the new model scores worse
    assert new.latent_mse > old.latent_mse
    assert app.session.model is bundled
    assert "kept in the list but not used" in app.training.message
    app.session.choose(second)
    assert app.session.model is second.model and "trained here" in app.session.model_origin
    app.session.choose(first)
    assert app.session.model is bundled


class ConstantOffset:
    """A model that predicts the force ``offset`` away from the truth, with unit std, in units where f_std is 1."""

    system_name = "transcription-linear"

    def __init__(self, offset):
        self.offset = offset
        self.normaliser = type("N", (), {"f_mean": 0.0, "f_std": 1.0})()

    def infer(self, one):
        f = one.dataset["f"]
        return xr.Dataset({"latent_mean": f + self.offset, "latent_std": xr.ones_like(f)})


def test_a_better_model_replaces_the_current_one_and_says_why():
    session = Session()
    tasks = simulate("transcription-linear", 12, seed=0)
    train, test = split_tasks(tasks)
    session.use_tasks(tasks, train, test, None)

    assert "first model" in session.add_model(ConstantOffset(1.0), "one")
    message = session.add_model(ConstantOffset(0.5), "two")
    assert session.model.offset == 0.5 and "0.25 beats 1" in message
    assert session.evaluation(session.models[1]).latent_mse == pytest.approx(0.25)
    assert "does not beat" in session.add_model(ConstantOffset(2.0), "three")
    assert session.model.offset == 0.5 and len(session.models) == 3


def test_evaluation_is_the_package_verdict_against_the_prior_mean():
    from dklfm_explore.ui.session import evaluate
    from dklfm_explore.verdict import Verdict

    tasks = simulate("transcription-linear", 6, seed=0)
    prior = float((tasks.dataset["f"] ** 2).mean())  # the prior-mean predictor (f_mean 0, f_std 1) scores the mean square force
    for offset, learned in ((0.1, True), (10.0, False)):
        verdict = evaluate(ConstantOffset(offset), tasks)
        assert isinstance(verdict, Verdict) and verdict.learned is learned
        assert verdict.latent_mse == pytest.approx(offset ** 2) and verdict.latent_mse_se == pytest.approx(0.0, abs=1e-12)
        assert verdict.prior_mse == pytest.approx(prior) and verdict.n_tasks == 6


def test_switching_the_system_shows_one_banner_on_every_tab_and_its_action_aligns():
    app = Explorer()
    assert all(banner.text == "" for banner in app.banners.values())
    app.system.system = "transcription-linear"
    texts = {banner.text for banner in app.banners.values()}
    assert texts == {"The sidebar shows **transcription-linear**, but the task set and the tabs are of **transcription**."}
    app.system.settings.n_tasks = 20
    app.align()
    app.taskset.job.join(JOB_TIMEOUT_S)
    assert app.session.tasks.system_name == "transcription-linear" and app.session.spec.system == "transcription-linear"
    text = app.banners["Inference"].text
    assert text == "The model in use is for **transcription**, the task set is of **transcription-linear**."
    assert app.banners["Inference"]._button.label == "Train a model for transcription-linear"
    app.system.settings.noise_level = 0.2
    assert app.banners["Training"].text == "The settings in the sidebar differ from those that made the task set."


def test_train_for_the_uploaded_data_system_trains_on_that_system():
    app = Explorer()
    app.training.param.update(epochs=1, max_seconds=5, epoch_tasks=32, validation_tasks=16)
    app.system.settings.n_tasks = 20
    app.train_for("transcription-linear")
    app.taskset.job.join(JOB_TIMEOUT_S)
    app.training.job.join(JOB_TIMEOUT_S)
    assert app.session.tasks.system_name == "transcription-linear"
    assert app.session.models[-1].system_name == "transcription-linear"
    assert app.session.model.system_name == "transcription-linear"  # the bundled model is for another system


def test_views_simulate_from_the_session_spec_not_the_sidebar():
    app = Explorer()
    app.show("Extrapolation")
    app.extrapolation.first_job.join(JOB_TIMEOUT_S)
    before = app.extrapolation.tasks.dataset["y"].values
    app.system.settings.noise_level = 0.5
    app.extrapolation.run()
    np.testing.assert_array_equal(app.extrapolation.tasks.dataset["y"].values, before)
    assert app.extrapolation.tasks.system_name == "transcription"


def test_an_empty_upload_clears_the_previous_result_and_error():
    from dklfm_explore.measurements import example_csv

    app = Explorer()
    view = app.your_data
    view.load_bytes(example_csv("transcription").encode(), "example.csv")
    assert view.result is not None and not view.download_csv.disabled
    view.upload.param.update(filename="bad.csv", value=b"when,what\n1,2\n")
    assert view.result is not None and view.confirm.pending  # nothing replaced before the answer
    view.confirm.answer(True)
    assert "bad.csv" in view.message
    view.upload.param.update(filename="empty.csv", value=None)
    assert not view.confirm.pending  # the bad file left nothing loaded to replace
    assert view.message == "empty.csv is empty; upload a CSV with a header row and one row per measured point."
    assert view.result is None and view.tasks is None and view.download_csv.disabled
    assert view._latent.object is None and view._summary.object == ""


def test_the_same_empty_file_uploaded_again_asks_again():
    """The browser sends one message with the filename and bytes of an upload, and only what changed."""
    from dklfm_explore.measurements import example_csv

    view = Explorer().your_data
    view.upload.param.update(filename="example.csv", value=example_csv("transcription").encode())
    result = view.result
    assert result is not None and view.upload.filename is None
    for _ in range(2):
        view.upload.param.update(filename="empty.csv", value=None)
        assert view.confirm.text == "Replace example.csv and its results with empty.csv?"
        view.confirm.answer(False)
        assert view.result is result
    view.upload.param.update(filename="empty.csv", value=None)
    view.confirm.answer(True)
    assert view.message.startswith("empty.csv is empty") and view.result is None


def test_timed_infer_reports_the_first_call_apart():
    from dklfm_explore.ui.results import TIMING_REPEATS, timed_infer

    calls = []

    class Slow:
        def infer(self, tasks):
            import time

            time.sleep(0.05 if not calls else 0.005)
            calls.append(1)
            return "result"

    tasks = simulate("transcription-linear", 2, seed=0)
    result, first, median = timed_infer(Slow(), tasks)
    assert result == "result" and len(calls) == 1 + TIMING_REPEATS
    # per task (2 tasks): the 50 ms first call is 25 ms, the later 5 ms calls 2.5 ms; sleep overshoots by under ~2 ms
    assert 25 <= first < 30 and 2.5 <= median < 4


def test_result_table_names_units_and_download_names_the_source():
    time = np.linspace(0, 1, 2)
    result = xr.Dataset(
        {"latent_mean": (("task", "time"), [[1 / 3, 2.0]]), "latent_std": (("task", "time"), [[1.0, 1.0]]),
         "output_mean": (("task", "output", "time"), [[[1.0, 2.0]]]), "output_std": (("task", "output", "time"), [[[0.5, 0.5]]]),
         "ood_score": (("task",), [0.5])},
        coords={"task": [0], "output": ["a"], "time": time},
    )
    table = result_table(result, {"time": "h", "latent": "", "output": "a.u."})
    assert list(table.columns) == ["task", "time [h]", "latent_mean", "latent_std", "a_mean [a.u.]", "a_std [a.u.]", "ood_score"]
    named = result_table(result, {"time": "h", "latent": "a.u."}, latent_name="p53 activity")
    assert list(named.columns)[2:4] == ["p53 activity_mean [a.u.]", "p53 activity_std [a.u.]"]
    app = Explorer()
    app.your_data.load_p53()
    text = app.your_data._csv_bytes().getvalue().decode()
    assert app.your_data.download_csv.filename == "p53_activity_the_bundled_p53_data_5_Gy_transcription.csv"
    comments = [line for line in text.splitlines() if line.startswith("#")]
    assert "# latent: p53 activity" in comments and "# data: the bundled p53 data (5 Gy)" in comments
    assert any(line.startswith("# model: bundled pretrained model transcription_p53.pt") for line in comments)
    rows = text.splitlines()[len(comments):]
    assert rows[0].startswith("task,time [h],p53 activity_mean,p53 activity_std,DDB2_mean [")
    assert max(len(cell) for line in rows[1:] for cell in line.split(",")) <= 12  # 6 significant digits


def test_a_new_task_set_clears_the_results_of_the_old_one():
    app = Explorer()
    app.show("Super-resolution")
    app.super_resolution.first_job.join(JOB_TIMEOUT_S)
    assert app.super_resolution.result is not None and not app.super_resolution.fine.is_spatial
    app.show("System")
    app.system.system = "transcription-linear"
    app.system.settings.n_tasks = 20
    app.taskset.generate_now()
    # the bundled model is for transcription: nothing to show, and the old result is gone with its plots
    assert app.super_resolution.result is None and app.super_resolution.grids_plot() is None
    assert "trained on *transcription* but the tasks are *transcription-linear*" in app.super_resolution._needs_model[0].object


def test_a_result_is_marked_loading_while_it_is_recomputed_and_not_after():
    app = Explorer()
    app.show("Inference")
    app.inference.first_job.join(JOB_TIMEOUT_S)
    panes = app.inference.result_panes()
    assert not any(pane.loading for pane in panes)
    release = threading.Event()
    model, infer = app.session.model, app.session.model.infer
    model.infer = lambda *args, **kwargs: release.wait(JOB_TIMEOUT_S) and infer(*args, **kwargs)
    app.inference.task = 3
    assert all(pane.loading for pane in panes) and "test task 0" in app.inference._metrics.object
    release.set()
    app.inference.first_job.join(JOB_TIMEOUT_S)
    assert not any(pane.loading for pane in panes) and "test task 3" in app.inference._metrics.object


def test_a_recompute_that_cannot_run_leaves_nothing_marked_loading():
    app = Explorer()
    app.show("Extrapolation")
    release = threading.Event()
    model, infer = app.session.model, app.session.model.infer
    model.infer = lambda *args, **kwargs: release.wait(JOB_TIMEOUT_S) and infer(*args, **kwargs)
    app.extrapolation.refresh(force=True)
    assert all(pane.loading for pane in app.extrapolation.result_panes())
    app.session.model = None  # the next refresh cannot run: no model
    release.set()
    app.extrapolation.first_job.join(JOB_TIMEOUT_S)
    assert not any(pane.loading for pane in app.extrapolation.result_panes())


def test_sliders_move_their_setting_at_the_end_of_a_drag_only():
    import panel as pn

    view = SystemView(Session(), preview=False)
    sliders = {widget.name: widget for widget in view.sidebar().select(pn.widgets.EditableRangeSlider)}
    slider = sliders["force lengthscale"]
    before = view.settings.lengthscale
    slider.value = (1.25, 3.5)  # mid-drag
    assert view.settings.lengthscale == before
    with param.edit_constant(slider):
        slider.value_throttled = (1.25, 3.5)  # the drag ends
    assert view.settings.lengthscale == (1.25, 3.5)
    noise = next(w for w in view.sidebar().select(pn.widgets.FloatSlider) if w.name == "observation noise")
    noise.value = 0.3
    assert view.settings.noise_level == 0.1
    with param.edit_constant(noise):
        noise.value_throttled = 0.3
    assert view.settings.noise_level == 0.3


def test_every_result_slider_follows_the_end_of_a_drag_only():
    app = Explorer(start=False)
    app.your_data.param.task.bounds = app.inference.param.task.bounds = (0, 5)
    app.super_resolution._time_widget.end = 5
    sliders = [(app.inference, "task", app.inference._task_widget, 2), (app.extrapolation, "task", app.extrapolation._task_widget, 2),
               (app.extrapolation, "factor", app.extrapolation._factor_widget, 2.0), (app.super_resolution, "task", app.super_resolution._task_widget, 2),
               (app.super_resolution, "time_index", app.super_resolution._time_widget, 2), (app.your_data, "task", app.your_data._task_widget, 2)]
    for view, name, widget, value in sliders:
        before = getattr(view, name)
        widget.value = value  # mid-drag: nothing recomputed
        assert getattr(view, name) == before, (type(view).__name__, name)
        with param.edit_constant(widget):
            widget.value_throttled = value  # the drag ends
        assert getattr(view, name) == value, (type(view).__name__, name)


def test_symbols_and_units_in_labels_read_as_text():
    from dklfm_explore.ui.system import plain_symbol

    assert plain_symbol(r"\lambda") == "λ" and plain_symbol("b_j") == "bⱼ" and plain_symbol("u_0") == "u₀"
    assert plain_symbol("length^2/time") == "length²/time" and plain_symbol(r"\alpha_{j}") == "αⱼ"
    labels = {settings_for("transcription").param[name].label for name in ("basal_rate", "decay_rate")}
    assert labels == {"basal rate bⱼ (x typical)", "decay rate dⱼ (x typical)"}


def test_training_draws_fresh_tasks_from_the_session_spec_by_default_and_the_task_set_on_request():
    app = Explorer()
    app.system.system = "transcription-linear"
    app.system.settings.n_tasks = 20
    app.taskset.generate_now()
    assert app.training.source == FROM_SIMULATOR
    app.training.param.update(epochs=2, epoch_tasks=32, validation_tasks=16, max_seconds=120)
    app.training.train()
    app.training.job.join(JOB_TIMEOUT_S)
    entry = app.session.models[-1]
    assert entry.model.provenance["source"] == "spec", app.training.message
    assert entry.model.provenance["spec"]["system"] == "transcription-linear"
    assert entry.model.provenance["tasks_seen"] == 64  # two epochs of 32 fresh tasks, none from the task set
    assert "from the simulator (64 fresh tasks, 2 epochs" in entry.origin and entry.trained_on is None
    app.training.source = FROM_TASK_SET
    app.training.train()
    app.training.job.join(JOB_TIMEOUT_S)
    entry = app.session.models[-1]
    train = app.session.train_tasks
    assert entry.model.provenance["source"] == "task set" and entry.trained_on is train
    # the 18 training tasks of the 20 (2 held out) less the trainer's own validation share
    assert entry.model.provenance["training_tasks"] + entry.model.provenance["validation_tasks"] == train.n_tasks == 18


def test_regenerating_the_task_set_that_trained_the_model_in_use_asks_first():
    app = Explorer()
    app.system.system = "transcription-linear"
    app.system.settings.n_tasks = 20
    app.taskset.generate_now()
    app.training.param.update(source=FROM_TASK_SET, epochs=1)
    app.training.train()
    app.training.job.join(JOB_TIMEOUT_S)
    app.session.choose(app.session.models[-1])
    tasks, train = app.session.tasks, app.session.train_tasks
    app.taskset.generate()
    assert app.taskset.confirm.pending and "trained on this task set" in app.taskset.confirm.text
    assert app.session.tasks is tasks and not app.taskset.job.running
    app.taskset.confirm.answer(False)
    assert app.session.tasks is tasks and not app.taskset.confirm.pending
    app.align()  # the banner's action asks the same question, on the Task set tab
    assert app.taskset.confirm.pending and app.tabs.active == list(app.sections).index("Task set")
    app.taskset.confirm.answer(True)
    app.taskset.job.join(JOB_TIMEOUT_S)
    assert app.session.tasks is not tasks and app.session.tasks.n_tasks == 20
    assert app.session.models[-1].trained_on is train is not None  # the model stays in the list
    app.taskset.generate()  # the model in use no longer trained on the task set: no question
    assert not app.taskset.confirm.pending
    app.taskset.job.join(JOB_TIMEOUT_S)


def test_loading_a_model_asks_before_it_replaces_the_one_in_use():
    app = Explorer()
    bundled = app.session.model
    saved = app.training._model_bytes().getvalue()
    app.training.upload.filename = "mine.pt"
    app.training.upload.value = saved
    assert app.session.model is bundled and app.training.confirm.pending
    assert app.training.confirm.no_button.label == "Keep the model in use"
    app.training.confirm.answer(False)
    assert app.session.model is bundled and len(app.session.models) == 2  # kept in the list, not in use
    app.training.offer(app.training.read_bytes(saved, "again.pt"), "again.pt")
    app.training.confirm.answer(True)
    assert app.session.model is not bundled and app.session.model_origin == "loaded from `again.pt`"


def test_uploading_over_loaded_data_asks_and_keeping_loses_nothing():
    from dklfm_explore.io import example_csv

    app = Explorer()
    view = app.your_data
    view.load_bytes(example_csv("transcription").encode(), "example.csv")
    result = view.result
    view.p53_button.clicks += 1
    assert view.confirm.text == "Replace example.csv and its results with the bundled p53 data (5 Gy)?"
    view.confirm.answer(False)
    assert view.result is result and not view.download_csv.disabled
    view.p53_button.clicks += 1
    view.confirm.answer(True)
    assert view.tasks.n_tasks == 3 and view.result is not result


@needs_bundled
def test_refine_in_the_inference_view_is_the_models_refined_answer_for_the_shown_task():
    app = Explorer()
    model = app.session.model
    button = app.inference.refine_button
    assert button.visible and not button.disabled
    app.show("Inference")
    app.inference.first_job.join(JOB_TIMEOUT_S)
    first = app.inference.result
    app.inference.refine()
    app.inference.refine_job.join(JOB_TIMEOUT_S)
    refined = app.inference.refined_result
    expected = model.infer(app.inference.one, refine=True)
    np.testing.assert_allclose(refined["latent_mean"].values, expected["latent_mean"].values, rtol=1e-10)
    assert not np.allclose(refined["latent_mean"].values, first["latent_mean"].values)  # a fit moved the first answer
    assert app.inference.result is first and "DKLFM refined" in app.inference._metrics.object
    assert len(app.inference.latent_plot()) == 2 and not button.disabled


def test_refine_says_where_it_does_not_apply():
    from types import SimpleNamespace

    from dklfm_explore.ui.results import refine_reason, show_refine

    import panel as pn

    assert refine_reason(SimpleNamespace(system_name="transcription")) == ""
    button = pn.widgets.Button()
    show_refine(button, SimpleNamespace(system_name="reaction-diffusion"))
    assert button.visible and button.disabled
    assert button.description.startswith("Refining does not apply to 'reaction-diffusion'")
    show_refine(button, None)
    assert not button.visible


def test_the_ood_badge_says_in_or_out_of_distribution():
    from dklfm_explore.ui.results import ood_badge

    result = xr.Dataset({"ood_score": ("task", [0.4, 3.0]), "out_of_distribution": ("task", [False, True])})
    assert "in distribution (score 0.4 ≤ 1)" in ood_badge(result, 0)
    assert "out of distribution (score 3 > 1)" in ood_badge(result, 1)
    assert ood_badge(xr.Dataset(), 0) == ""


def test_a_system_registered_after_the_dashboard_is_imported_is_offered_by_a_new_page():
    from dklfm_explore.systems import SYSTEMS, get_system, register_system

    base = type(get_system("transcription-linear"))
    register_system(type("Late", (base,), {"name": "registered-late"}))
    try:
        app = Explorer(start=False)
        assert "registered-late" in app.system._system_select.options
    finally:
        SYSTEMS.pop("registered-late")


@needs_bundled
def test_p53_outputs_carry_their_measurement_errors_as_bars():
    app = Explorer()
    view = app.your_data
    view.load_p53()
    first = view._outputs.object.values()[0]
    bars = [layer for layer in first if isinstance(layer, hv.ErrorBars)]
    assert len(bars) == 1
    se = view.tasks.dataset["y_se"].isel(task=0, output=0).values
    observed = np.isfinite(view.tasks.dataset["y"].isel(task=0, output=0).values)
    np.testing.assert_allclose(bars[0].dimension_values(2), 1.959963984540054 * se[observed])


def test_plots_leave_the_mouse_wheel_to_the_page():
    from bokeh.models import WheelZoomTool

    from dklfm_explore import plots

    figure = hv.render(plots.sample_tasks(simulate("transcription-linear", 2, seed=0), 1))
    for child in figure.children:
        toolbar = child[0].toolbar
        assert any(isinstance(tool, WheelZoomTool) for tool in toolbar.tools)  # a toolbar tool to switch on
        assert not isinstance(toolbar.active_scroll, WheelZoomTool)  # HoloViews' default would make it the active one


@needs_bundled
def test_your_data_refine_shows_the_models_refined_answer_for_the_upload():
    from dklfm_explore.io import example_csv

    app = Explorer()
    view = app.your_data
    view.load_bytes(example_csv("transcription").encode(), "example.csv")
    first = view.result
    assert view.refine_button.visible and not view.refine_button.disabled
    view.refine()
    view.refine_job.join(JOB_TIMEOUT_S)
    expected = app.session.model.infer(view.tasks, refine=True, time=first["time"].values)
    np.testing.assert_allclose(view.result["latent_mean"].values, expected["latent_mean"].values, rtol=1e-10)
    assert view.result.attrs["refined"] == 1 and not np.allclose(view.result["latent_mean"].values, first["latent_mean"].values)
    assert "refined answer" in view.message


def _marks(overlay):
    """The suggested next measurement times marked on a latent plot (its Spikes labelled 'measure next')."""
    spikes = [layer for layer in overlay if isinstance(layer, hv.Spikes) and layer.label == "measure next"]
    return spikes[0] if spikes else None


@needs_bundled
def test_inference_marks_where_to_measure_next_as_the_design_module_ranks_it():
    import pandas as pd

    from dklfm_explore.design import next_measurements

    app = Explorer()
    view = app.inference
    view.param.update(task=3, next_k=4)
    app.show("Inference")
    view.first_job.join(JOB_TIMEOUT_S)
    expected = next_measurements(app.session.model, app.session.test_tasks.isel([3]), 4)
    pd.testing.assert_frame_equal(view.suggestions, expected)
    marks = _marks(view.latent_plot())
    np.testing.assert_allclose(marks.dimension_values("time"), expected["time"])
    np.testing.assert_allclose(marks.dimension_values("variance_reduction"), expected["variance_reduction"])
    assert len(set(expected["time"])) == 4  # greedy picks never repeat a time
    assert f"1. time {expected['time'][0]:.3g} h (lowers it by {expected['variance_reduction'][0]:.2g})" in view._next_text.object
    view.next_k = 0
    assert view.suggestions is None and _marks(view.latent_plot()) is None and view._next_text.object == ""


@needs_bundled
def test_your_data_marks_where_to_measure_the_shown_series_next():
    from dklfm_explore.design import next_measurements

    app = Explorer()
    view = app.your_data
    view.load_p53()
    view.param.update(task=2, next_k=2)
    expected = next_measurements(app.session.model, view.tasks, 2, task=2)
    np.testing.assert_allclose(view.suggestions["time"], expected["time"])
    np.testing.assert_allclose(_marks(view._latent.object).dimension_values("time"), expected["time"])
    np.testing.assert_allclose(view.suggestions["variance_reduction"], expected["variance_reduction"])
    other = next_measurements(app.session.model, view.tasks, 2, task=0)
    assert not np.allclose(other["variance_reduction"], expected["variance_reduction"])  # each series its own ranking
    assert "Where to measure next" in view._next_text.object and view._next_k.visible
    assert "p53 activity units squared" in view._next_text.object  # the latent by its name, as on the plots


def test_every_systems_settings_have_readable_names():
    import panel as pn

    from dklfm_explore.systems import SYSTEMS

    view = SystemView(Session(), preview=False)
    for name in SYSTEMS:
        view.system = name
        labels = [widget.name for widget in view.sidebar().select(pn.widgets.Widget) if widget.name]
        assert len(labels) > 6, name
        assert not [label for label in labels if "\\" in label or "$" in label], name  # no raw LaTeX such as \\alpha


def test_a_layouts_panels_sit_in_a_wrapping_row_each_with_a_save_tool():
    import panel as pn
    from bokeh.models import SaveTool

    from dklfm_explore import plots
    from dklfm_explore.ui.panes import PlotPane

    for system, count in (("transcription", 6), ("reaction-diffusion", 6)):
        pane = PlotPane(plots.sample_tasks(simulate(system, 3, seed=0), 3))
        box = pane.__panel__()
        assert isinstance(box, pn.FlexBox) and box.flex_wrap == "wrap" and len(box) == count, system
        for child in box:
            figure = hv.render(child.object)
            assert figure.toolbar_location is not None and any(isinstance(t, SaveTool) for t in figure.toolbar.tools), system
    pane.object = None
    assert len(pane.__panel__()) == 0
    by_task = PlotPane(plots.sample_tasks(simulate("transcription", 3, seed=0), 3), by_column=True).__panel__()
    assert len(by_task) == 3 and all(len(column) == 2 for column in by_task)  # one task per column: outputs over latent


def test_the_session_figure_format_switches_every_plot_of_that_session_only_to_svg_and_back():
    import panel as pn
    from bokeh.models import Plot

    from dklfm_explore.ui.panes import PlotPane

    mine, other = Explorer(), Explorer()
    plot_panes = lambda app: [p for p in vars(app.system).values() if isinstance(p, PlotPane)] + \
        [p for view in (app.taskset, app.training, app.your_data) for p in vars(view).values() if isinstance(p, PlotPane)]
    backends = lambda pane: {plot.output_backend for child in pane.__panel__().select(pn.pane.HoloViews)
                             for plot in hv.render(child.object).select({"type": Plot})}
    assert len(plot_panes(mine)) == 6
    assert all("svg" not in backends(p) for p in plot_panes(mine))  # the default draws on a canvas (webgl): PNG
    mine.figure_format.value = "svg"
    assert mine.session.figure_format == "svg"
    assert all(p.figure_format == "svg" for p in plot_panes(mine))
    assert backends(mine.system._preview_pane) == {"svg"} and backends(mine.training._curves) == {"svg"}
    assert {p.figure_format for p in plot_panes(other)} == {"png"}  # another page load keeps its own choice
    mine.session.figure_format = "png"
    assert backends(mine.system._preview_pane) and "svg" not in backends(mine.system._preview_pane)


def test_a_system_switch_greys_the_old_preview_until_the_new_one_is_drawn():
    view = SystemView(Session())
    pending = []
    view.later = lambda callback: pending.append(callback) or True
    old = view._preview_pane.object
    view.system = "lotka-volterra"
    assert "Lotka" in view._description.object and view._preview_pane.object is old  # the new equation, the old tasks...
    assert view._preview_pane.loading and len(pending) == 1  # ... greyed, and the redraw sent after them
    view.settings.noise_level = 0.2
    assert len(pending) == 1  # one redraw pending at a time
    pending.pop()()
    assert not view._preview_pane.loading and view._preview_pane.object is not old
    assert view.preview.system_name == "lotka-volterra"
