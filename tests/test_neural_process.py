"""The transformer neural process: its shapes and invariances, meta-training on a tiny problem, its result format and errors."""

import numpy as np
import pytest
import torch

from dklfm_explore import simulate
from dklfm_explore.data import TaskSet
from dklfm_explore.errors import InvalidInputError
from dklfm_explore.metrics import latent_metrics
from dklfm_explore.model.baselines import NeuralProcess, train_neural_process
from dklfm_explore.model.baselines.neural_process import MIN_STD, TransformerNeuralProcess

N_OUTPUTS, N_POINTS, N_QUERY = 3, 7, 5


@pytest.fixture
def module():
    torch.manual_seed(0)
    return TransformerNeuralProcess(N_OUTPUTS, mesh_dims=1, width=16, heads=2, layers=2).eval()


def context(generator, n_tasks=2):
    """Random context tokens: coordinates ``(task, point, 1)``, output ``(task, point)``, value, absent."""
    coordinates = torch.rand(n_tasks, N_POINTS, 1, generator=generator)
    output = torch.randint(0, N_OUTPUTS, (n_tasks, N_POINTS), generator=generator)
    value = torch.randn(n_tasks, N_POINTS, generator=generator)
    absent = torch.zeros(n_tasks, N_POINTS, dtype=torch.bool)
    absent[1, -2:] = True
    return coordinates, output, value, absent


@pytest.fixture(scope="module")
def tiny():
    """Eight transcription tasks on 10 times to meta-train on, three to test on."""
    return simulate("transcription", 8, n_points=10, seed=0), simulate("transcription", 3, n_points=10, seed=1)


@pytest.fixture(scope="module")
def trained(tiny):
    return train_neural_process(tiny[0], epochs=120, batch_size=4, learning_rate=2e-3, width=32, heads=2, layers=2, seed=3)


def test_forward_gives_mean_and_positive_std_per_task_query_and_channel(module, generator):
    query = torch.rand(2, N_QUERY, 1, generator=generator)
    mean, std = module(*context(generator), query)
    assert mean.shape == std.shape == (2, N_QUERY, 1 + N_OUTPUTS)
    assert torch.all(std >= MIN_STD)


def test_absent_context_values_do_not_change_the_prediction(module, generator):
    tokens = context(generator)
    query = torch.rand(2, N_QUERY, 1, generator=generator)
    changed = tokens[2].clone()
    changed[1, -2:] = 1e3
    first, second = module(*tokens, query), module(*tokens[:2], changed, tokens[3], query)
    torch.testing.assert_close(first, second, rtol=0, atol=1e-6)


def test_prediction_is_invariant_to_the_context_order_and_each_query_is_predicted_alone(module, generator):
    coordinates, output, value, absent = context(generator)
    query = torch.rand(2, N_QUERY, 1, generator=generator)
    order = torch.randperm(N_POINTS, generator=generator)
    mean, std = module(coordinates, output, value, absent, query)
    shuffled = module(coordinates[:, order], output[:, order], value[:, order], absent[:, order], query)
    torch.testing.assert_close((mean, std), shuffled, rtol=1e-5, atol=1e-5)
    alone = module(coordinates, output, value, absent, query[:, :1])
    torch.testing.assert_close((mean[:, :1], std[:, :1]), alone, rtol=1e-5, atol=1e-5)


def test_width_not_a_multiple_of_heads_is_refused():
    with pytest.raises(InvalidInputError, match="multiple of heads"):
        TransformerNeuralProcess(2, width=10, heads=4)


def test_meta_training_reduces_the_loss_with_a_fixed_seed(tiny, trained):
    assert trained.steps == 120 * 2
    early, late = np.mean(trained.losses[:10]), np.mean(trained.losses[-10:])
    # A Gaussian NLL per standardised value starts near 1.4 (std ~ 1); 240 steps on 8 tasks bring it well below 1.
    assert late < early - 0.4
    again = train_neural_process(tiny[0], epochs=1, batch_size=4, learning_rate=2e-3, width=32, heads=2, layers=2, seed=3)
    np.testing.assert_array_equal(again.losses, trained.losses[:2])


def test_trained_model_predicts_the_latent_better_than_the_training_mean(tiny, trained):
    train, test = tiny
    result = trained.infer(test)
    scale = float(train.dataset["f"].std())
    scores = latent_metrics(result, test.dataset["f"], scale)
    baseline = float((((test.dataset["f"] - train.dataset["f"].mean()) / scale) ** 2).mean())
    # Meta-trained on eight tasks only: better than predicting the training mean, by a margin the test can see.
    assert scores["latent_mse"] < 0.8 * baseline
    assert result["latent_mean"].dims == ("task", "time") and result["output_mean"].dims == ("task", "output", "time")
    assert result["output_mean"].shape == test.dataset["y"].shape
    assert float(result["latent_std"].min()) > 0 and float(result["output_std"].min()) > 0


def test_query_times_beyond_the_window_give_one_value_per_query_time(tiny, trained):
    test = tiny[1]
    query = np.linspace(0.0, 2 * float(test.dataset["time"].max()), 13)
    result = trained.infer(test, time=query)
    assert result["latent_mean"].shape == (test.n_tasks, 13)
    np.testing.assert_array_equal(result["time"].values, query)
    assert np.all(np.isfinite(result["latent_mean"].values))


def test_missing_values_predict_as_if_those_times_were_not_there(tiny, trained):
    test = tiny[1]
    times = test.dataset["time"].values
    partial = test.dataset.copy(deep=True)
    partial["y"][:, :, 5:] = np.nan
    masked = trained.infer(TaskSet(partial))
    cut = trained.infer(test.window(t_max=float(times[4])), time=times)
    np.testing.assert_allclose(masked["latent_mean"].values, cut["latent_mean"].values, rtol=1e-5, atol=1e-6)
    full = trained.infer(test)
    assert not np.allclose(masked["latent_mean"].values, full["latent_mean"].values, atol=1e-3)


def test_spatial_tasks_give_the_latent_on_the_query_mesh():
    train = simulate("reaction-diffusion", 4, grid=(5, 6), seed=0)
    model = train_neural_process(train, epochs=2, batch_size=2, width=16, heads=2, layers=1, seed=0)
    space, time = np.linspace(0, 1, 7), np.linspace(0, 1, 4)
    result = model.infer(train, space=space, time=time)
    assert result["latent_mean"].dims == ("task", "space", "time")
    assert result["latent_mean"].shape == (4, 7, 4) and result["output_mean"].shape == (4, train.n_outputs, 7, 4)
    assert float(result["latent_std"].min()) > 0


def test_bad_input_is_refused_with_a_clear_message(tiny, trained):
    train, test = tiny
    no_latent = train.dataset.drop_vars("f")
    with pytest.raises(InvalidInputError, match="latent force"):
        train_neural_process(TaskSet(no_latent))
    with pytest.raises(InvalidInputError, match="epochs"):
        train_neural_process(train, epochs=0)
    with pytest.raises(InvalidInputError, match="trained on 'transcription'"):
        trained.infer(simulate("lotka-volterra", 2, n_points=10, seed=0))
    with pytest.raises(InvalidInputError, match="over time only"):
        trained.infer(test, space=[0.0, 1.0])
    empty = test.dataset.copy(deep=True)
    empty["y"][1] = np.nan
    with pytest.raises(InvalidInputError, match="Task 1 has no observed value"):
        trained.infer(TaskSet(empty))
    assert isinstance(trained, NeuralProcess)
