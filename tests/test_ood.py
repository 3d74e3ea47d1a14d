"""The out-of-distribution score: stored with the model, flags foreign tasks, spares in-distribution ones."""

import warnings

import numpy as np
import pytest

from dklfm_explore import simulate
from dklfm_explore.data import TaskSet
from dklfm_explore.errors import OutOfDistributionWarning
from dklfm_explore.ood import ood_sentence
from dklfm_explore.model import ModelConfig
from dklfm_explore.systems import get_system
from dklfm_explore.train import TrainingConfig, train
from dklfm_explore.trained import load_model

SMALL_MODEL = ModelConfig(embedding_dim=4, fno_width=8, fno_modes=4, mlp_width=16, feature_dim=4)
N_OUTPUTS = 2
N_POINTS = 20


@pytest.fixture(scope="module")
def model():
    tasks = simulate("transcription", 100, n_points=N_POINTS, n_outputs=N_OUTPUTS, seed=0)
    validation = simulate("transcription", 150, n_points=N_POINTS, n_outputs=N_OUTPUTS, seed=1)
    return train(tasks, TrainingConfig(epochs=12, batch_size=16, seed=0), SMALL_MODEL, validation_tasks=validation)


def _replace_y(tasks: TaskSet, y: np.ndarray) -> TaskSet:
    dataset = tasks.dataset.copy(deep=True)
    dataset["y"] = (dataset["y"].dims, y)
    return TaskSet(dataset.drop_vars("y_clean"))


def _flags(model, tasks: TaskSet, **kwargs) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OutOfDistributionWarning)
        return model.infer(tasks, **kwargs)["out_of_distribution"].values


def test_in_distribution_tasks_are_flagged_at_about_one_percent(model):
    tasks = simulate("transcription", 300, n_points=N_POINTS, n_outputs=N_OUTPUTS, seed=2)
    # 150 reference tasks put the 0.5%/99.5% quantiles near their extremes: the expected false rate is
    # about 2/151 ~ 1.3%; 5% is more than 4 binomial standard errors (sd ~ 0.7% at 300 tasks) above it.
    assert _flags(model, tasks).mean() <= 0.05


def test_decay_rates_five_times_the_training_range_are_flagged(model):
    decay = next(p for p in get_system("transcription").parameters if p.name == "decay_rate")
    fast = {"decay_rate": (5 * min(decay.low[:N_OUTPUTS]), 5 * max(decay.high[:N_OUTPUTS]))}
    tasks = simulate("transcription", 20, n_points=N_POINTS, n_outputs=N_OUTPUTS, seed=3, parameter_ranges=fast)
    # Measured 14 of 20 with this small model (12 epochs): some fast-decaying tasks with a weak force look like
    # slow ones with a weaker force; the bound asks for a clear majority, far above the ~1% in-distribution rate.
    assert _flags(model, tasks).mean() >= 0.6


def test_another_system_is_flagged(model):
    """Predator-prey curves (two runs of the Lotka-Volterra system as the two outputs) on the model's time axis."""
    template = simulate("transcription", 20, n_points=N_POINTS, n_outputs=N_OUTPUTS, seed=4)
    runs = [simulate("lotka-volterra", 20, n_points=N_POINTS, seed=seed).dataset["y"].values for seed in (4, 5)]
    assert _flags(model, _replace_y(template, np.concatenate(runs, axis=1))).mean() >= 0.8


@pytest.mark.parametrize("kind", ["noise", "constant"])
def test_pure_noise_and_constant_curves_are_flagged_with_a_warning_naming_them(model, kind):
    tasks = simulate("transcription", 6, n_points=N_POINTS, n_outputs=N_OUTPUTS, seed=5)
    shape = tasks.dataset["y"].shape
    y = np.random.default_rng(0).normal(size=shape) if kind == "noise" else np.full(shape, 0.7)
    foreign = _replace_y(tasks, y)
    with pytest.warns(OutOfDistributionWarning, match=f"6 task\\(s\\).*: {foreign.dataset['task'].values[0]}, "):
        result = model.infer(foreign)
    assert result["out_of_distribution"].values.all()
    assert (result["ood_score"].values > 1).all()


def test_reference_survives_a_checkpoint_and_old_ones_have_no_score(model, tmp_path):
    tasks = simulate("transcription", 4, n_points=N_POINTS, n_outputs=N_OUTPUTS, seed=6)
    loaded = load_model(model.save(tmp_path / "m.pt"))
    assert loaded.ood_reference == model.ood_reference
    np.testing.assert_allclose(loaded.infer(tasks)["ood_score"].values, model.infer(tasks)["ood_score"].values, rtol=1e-9)
    loaded.ood_reference = None
    assert "ood_score" not in loaded.infer(tasks)


def test_sentence_names_flagged_tasks_and_is_empty_otherwise(model):
    tasks = simulate("transcription", 3, n_points=N_POINTS, n_outputs=N_OUTPUTS, seed=7)
    constant = _replace_y(tasks, np.full(tasks.dataset["y"].shape, 0.7))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OutOfDistributionWarning)
        flagged = model.infer(constant)
    names = [str(n) for n in constant.dataset["task"].values]
    assert ood_sentence(flagged).startswith(f"Out of distribution: {names[0]} (")
    assert all(name in ood_sentence(flagged) for name in names)
    clean = flagged.copy()
    clean["out_of_distribution"] = ("task", np.zeros(3, dtype=bool))
    assert ood_sentence(clean) == "" and ood_sentence(flagged.drop_vars(["ood_score", "out_of_distribution"])) == ""


def test_a_trained_model_flags_every_task_with_decay_rates_five_times_the_range():
    """The bundled model (512 tasks, minutes of training) with a reference from 200 validation tasks: the weak
    small-model bound above is the small model's, not the score's."""
    from dklfm_explore import load_pretrained
    from dklfm_explore.ood import ood_reference

    trained = load_pretrained("transcription", device="cpu")
    trained.ood_reference = ood_reference(trained.module, trained.normaliser, simulate("transcription", 200, n_points=30, seed=10))
    decay = next(p for p in get_system("transcription").parameters if p.name == "decay_rate")
    fast = {"decay_rate": (tuple(5 * v for v in decay.low), tuple(5 * v for v in decay.high))}
    tasks = simulate("transcription", 40, n_points=30, seed=3, parameter_ranges=fast)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OutOfDistributionWarning)
        scores = trained.infer(tasks)["ood_score"].values
    # Measured with 400 reference tasks: 100 of 100 such tasks flagged, their 10th-percentile score 1.7 (1 = the
    # threshold); 90% leaves room for the smaller reference, far above the in-distribution rate (7 of 300).
    assert (scores > 1).mean() >= 0.9
