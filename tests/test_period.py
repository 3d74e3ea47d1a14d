"""The period estimate behind the phase time input, and the periodicity it gives the model."""

import math

import pytest
import torch

from dklfm_explore.model.dklfm import DKLFM, ModelConfig
from dklfm_explore.model.period import estimate_periods

TIME = torch.linspace(0.0, 30.0, 60, dtype=torch.float64)


def _curves(periods, phase=0.3):
    """Two-bump cycles: the second harmonic outweighs the first, the case that aliases to half the period."""
    angle = 2 * math.pi * TIME[None, :] / torch.tensor(periods, dtype=torch.float64)[:, None] + phase
    return (0.4 * torch.cos(angle) + torch.cos(2 * angle) + 0.2 * torch.sin(3 * angle))[:, None, :]


def test_noise_free_periods_are_found_to_a_tenth_of_a_percent():
    periods = [5.0, 6.3, 7.7, 9.9]
    estimate = estimate_periods(TIME, _curves(periods))
    # the fine grid steps by 0.17% of the period; a noise-free series has its minimum at the true period
    assert torch.allclose(estimate, torch.tensor(periods, dtype=torch.float64), rtol=2e-3)


def test_missing_values_are_left_out_of_the_fit():
    y = _curves([7.0])
    y[0, 0, 10:25] = float("nan")
    assert abs(float(estimate_periods(TIME, y)[0]) / 7.0 - 1) < 2e-3


def test_bounds_restrict_the_search():
    estimate = estimate_periods(TIME, _curves([7.0]), bounds=(8.0, 12.0))
    assert 8.0 <= float(estimate[0]) <= 12.0


def test_a_phase_model_predicts_the_same_force_one_period_apart():
    model = DKLFM(ModelConfig(n_outputs=1, input_dim=1, time_input="phase"))
    y = _curves([7.0])
    query = torch.linspace(0.0, 60.0, 121, dtype=torch.float64)
    with torch.no_grad():
        post = model.posterior(TIME, y, query)
        period = float(model.task_periods(TIME, y)[0])
    inside = query + period <= 60.0
    again = model.posterior(TIME, y, query[inside] + period)
    # features depend on time only through the phase, so the conditional is periodic up to float rounding
    assert torch.allclose(post.latent_mean[0, inside], again.latent_mean[0], atol=1e-8)


def test_phase_input_needs_a_time_only_mesh():
    with pytest.raises(Exception, match="time-only"):
        ModelConfig(n_outputs=1, input_dim=2, time_input="phase").validate()


def test_the_fully_observed_shortcut_and_the_recurrence_match_the_direct_fit():
    from dklfm_explore.model.period import _design, _residuals

    periods = torch.tensor([[4.0, 6.5, 11.0], [5.0, 7.0, 9.0]], dtype=torch.float64)
    design = _design(TIME, periods, 12)
    angle = 2 * math.pi * TIME[None, None, None, :] * torch.arange(1, 13, dtype=torch.float64)[None, None, :, None] / periods[..., None, None]
    assert torch.allclose(design[:, :, 1:13], torch.cos(angle), atol=1e-12)
    assert torch.allclose(design[:, :, 13:], torch.sin(angle), atol=1e-12)
    y = torch.cat([_curves([6.5]), 0.5 * _curves([6.5], phase=1.0)], dim=1).expand(2, -1, -1)
    ones = torch.ones_like(y)
    shortcut, weighted = _residuals(TIME, y, ones, periods, 6, complete=True), _residuals(TIME, y, ones, periods, 6)
    assert torch.allclose(shortcut, weighted, rtol=1e-9, atol=1e-12)
    assert shortcut[0, 1] < 1e-6 * shortcut[0, 0]  # the true period fits exactly; a wrong one leaves a residual
