"""Short trainings of the default model leave the prior on every built-in system and on a user-defined ODE.

The prior-mean predictor scores a held-out latent MSE of ~1 in standardised units (the training
latent's mean and std).  Seed 2 stayed at the prior with 256 tasks before
``ModelConfig.initial_latent_noise`` (docs/tuning.md).
"""

import pytest
import torch

from dklfm_explore import simulate
from dklfm_explore.model import ModelConfig
from dklfm_explore.systems import ODESystem, ParameterSpec, register_system
from dklfm_explore.train import TrainingConfig, latent_mse, prepare, train


@register_system
class SaturatingDecay(ODESystem):
    name = "test-saturating-decay"
    output_names = ("x",)
    parameters = (ParameterSpec("rate", "k", 0.5, 1.5, "1/s", "decay rate"),)

    def rhs(self, t, state, force, parameters):
        return torch.nn.functional.softplus(force)[:, None] - parameters["rate"][:, None] * state


SYSTEMS = {
    "transcription": dict(n_points=20),
    "transcription-linear": dict(n_points=20),
    "lotka-volterra": dict(n_points=30),
    "reaction-diffusion": dict(grid=(9, 9)),
    "test-saturating-decay": dict(n_points=20),
}


def _held_out_mse(system: str, seed: int, model_config: ModelConfig, epochs: int = 12) -> float:
    mesh = SYSTEMS[system]
    tasks = simulate(system, 96, seed=seed, **mesh)
    test = simulate(system, 32, seed=1000 + seed, **mesh)
    model = train(tasks, TrainingConfig(epochs=epochs, batch_size=16, patience=epochs, seed=seed), model_config)
    return latent_mse(model.module, prepare(test, model.normaliser, torch.device("cpu")))


@pytest.mark.slow
@pytest.mark.parametrize("system", list(SYSTEMS))
def test_default_training_leaves_the_prior(system):
    # 12 epochs of 5 steps (10-25 s on a shared core).  Measured with seed 2 (MEASURED); each bound leaves
    # room for BLAS differences and stays under the prior's ~1, so a run stuck at the prior fails.
    assert _held_out_mse(system, 2, ModelConfig()) < MARGINS[system]


MEASURED = {"transcription": 0.31, "transcription-linear": 0.09, "lotka-volterra": 0.59, "reaction-diffusion": 0.53, "test-saturating-decay": 0.16}
MARGINS = {
    "transcription": 0.6,
    "transcription-linear": 0.3,
    "lotka-volterra": 0.8,  # in-window only; 0.89 with the stationary kernel and the time input (docs/tuning.md, seventh round)
    "reaction-diffusion": 0.8,
    "test-saturating-decay": 0.5,
}

