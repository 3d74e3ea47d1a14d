"""Metrics against hand-computed values."""

import math

import numpy as np
import pytest
import xarray as xr

from dklfm_explore.errors import InvalidInputError
from dklfm_explore.metrics import latent_metrics, output_metrics


def _result(mean, std):
    return xr.Dataset({"latent_mean": (("task", "time"), mean), "latent_std": (("task", "time"), std)})


def test_latent_metrics_by_hand():
    truth = xr.DataArray(np.array([[0.0, 1.0, 2.0, 3.0]]), dims=("task", "time"))
    result = _result(np.array([[0.0, 1.0, 2.0, 7.0]]), np.ones((1, 4)))
    scores = latent_metrics(result, truth, scale=2.0)
    assert scores["latent_mse"] == pytest.approx((2.0**2) / 4)
    assert scores["coverage95"] == pytest.approx(0.75)  # the last point is 4 std away
    expected_nlpd = np.mean([0.5 * math.log(2 * math.pi) + math.log(0.5) + 0.5 * (e / 0.5) ** 2 for e in (0, 0, 0, 2.0)])
    assert scores["nlpd"] == pytest.approx(expected_nlpd)


def test_calibrated_gaussian_covers_95_percent():
    rng = np.random.default_rng(0)
    truth = rng.normal(size=(50, 400))
    std = np.full_like(truth, 1.0)
    scores = latent_metrics(_result(np.zeros_like(truth), std), xr.DataArray(truth, dims=("task", "time")), 1.0)
    assert abs(scores["coverage95"] - 0.95) < 0.005
    assert scores["latent_mse"] == pytest.approx(1.0, abs=0.02)


def test_output_metrics_scale_per_output():
    truth = xr.DataArray(np.zeros((1, 2, 3)), dims=("task", "output", "time"))
    result = xr.Dataset({"output_mean": (("task", "output", "time"), np.ones((1, 2, 3))),
                         "output_std": (("task", "output", "time"), np.ones((1, 2, 3)))})
    assert output_metrics(result, truth, [1.0, 2.0])["output_mse"] == pytest.approx((1 + 0.25) / 2)


def test_shape_mismatch_is_a_clear_error():
    with pytest.raises(InvalidInputError, match="shape"):
        latent_metrics(_result(np.zeros((1, 3)), np.ones((1, 3))), xr.DataArray(np.zeros((1, 4)), dims=("task", "time")), 1.0)
