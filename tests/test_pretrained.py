"""The bundled pretrained model: loads, infers p53 sensibly, and its recorded commands still reproduce its quality."""

import shlex

import numpy as np
import pytest

from dklfm_explore import simulate
from dklfm_explore.cli import main as cli
from dklfm_explore.datasets import PRETRAINED_MODELS, load_p53, load_pretrained
from dklfm_explore.io import pool_replicates
from dklfm_explore.metrics import latent_metrics
from dklfm_explore.trained import load_model

ENTRY = PRETRAINED_MODELS["transcription"]
pytestmark = pytest.mark.skipif(not ENTRY.path.is_file(), reason="no bundled pretrained model installed")


def _held_out_mse(model) -> float:
    test = simulate("transcription", 20, n_points=30, seed=11)
    return latent_metrics(model.infer(test), test.dataset["f"], model.normaliser.f_std)["latent_mse"]


def test_bundled_model_infers_the_p53_pulse():
    model = load_pretrained("transcription")
    assert list(model.output_names) == ["DDB2", "BIK", "DR5", "p21", "SESN1"]
    pooled = model.infer(pool_replicates(load_p53("5Gy")), time=np.linspace(0, 12, 49))
    activity = pooled["latent_mean"].values[0]
    peak_hour = float(pooled["time"].values[activity.argmax()])
    # Barenco et al. (2006) and later LFM fits put p53's activity peak after irradiation at about 4-6 h,
    # returning towards baseline by 10-12 h.
    assert 3.0 <= peak_hour <= 7.5, peak_hour
    assert activity.max() > activity[0] + 2 * pooled["latent_std"].values[0].mean()
    assert activity[-1] < activity.max()


def test_bundled_model_is_accurate_on_held_out_simulations():
    assert _held_out_mse(load_pretrained("transcription")) < 0.4  # the prior-mean predictor scores about 1.0


@pytest.mark.slow
def test_recorded_commands_reproduce_a_model_of_the_same_quality(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for command in ENTRY.commands:
        words = shlex.split(command)
        assert words[0] == "dklfm"
        (tmp_path / words[words.index("--out") + 1]).parent.mkdir(parents=True, exist_ok=True)
        if words[1] == "train":
            position = words.index("--max-minutes")
            words[position + 1] = "2"  # CI budget: a third of the recorded one
        assert cli(words[1:]) == 0
    rebuilt = load_model(tmp_path / "dklfm_explore" / "datasets" / "data" / ENTRY.file)
    bundled = _held_out_mse(load_pretrained("transcription"))
    assert _held_out_mse(rebuilt) <= 1.5 * bundled + 0.05
