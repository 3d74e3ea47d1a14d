"""The paper-protocol tasks (PROTOCOL.md 1.1): as the authors' generator made them."""

import numpy as np
import torch

from dklfm_explore import simulate
from dklfm_explore.bench.paper_protocol import PaperTranscription, conditioning_times

KINETICS = ("basal_rate", "sensitivity", "decay_rate")


def test_paper_protocol_tasks_start_at_zero_ignore_the_sensitivity_and_are_noise_free():
    tasks = simulate(PaperTranscription(), 2, noise_level=0.0, seed=3)
    assert tasks.dataset["time"].size == 10 and float(tasks.dataset["time"][-1]) == 9.0
    np.testing.assert_array_equal(tasks.dataset["y"].values[..., 0], 0.0)
    np.testing.assert_array_equal(tasks.dataset["y"].values, tasks.dataset["y_clean"].values)
    assert float(tasks.dataset["f"].min()) > 0  # the target is softplus of the draw
    system = PaperTranscription()
    parameters = {name: torch.as_tensor(tasks.dataset[name].values) for name in KINETICS}
    state = torch.ones(2, 5, dtype=torch.float64)
    force = torch.full((2,), 0.7, dtype=torch.float64)
    twice = {**parameters, "sensitivity": 2 * parameters["sensitivity"]}
    assert torch.equal(system.rhs(0.0, state, force, parameters), system.rhs(0.0, state, force, twice))
    chosen = conditioning_times(tasks.dataset["time"].values)
    assert chosen.size == 9 and np.all(np.isin(chosen, tasks.dataset["time"].values))
