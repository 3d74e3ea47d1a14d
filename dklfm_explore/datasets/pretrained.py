"""Small pretrained models shipped with the package, so the dashboard and notebooks start instantly.

Each entry records the exact commands that produced its checkpoint; ``tests/test_pretrained.py`` reruns them
with a smaller budget and checks the result reaches the same quality.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import InvalidInputError, UnknownNameError
from .registry import DATA_DIR

__all__ = ["PretrainedModel", "PRETRAINED_MODELS", "pretrained_path", "load_pretrained"]


@dataclass(frozen=True)
class PretrainedModel:
    """A bundled checkpoint: its system, file name in ``data/``, the commands that made it, and its quality."""

    system: str
    file: str
    commands: tuple[str, ...]
    description: str

    @property
    def path(self) -> Path:
        return DATA_DIR / self.file


PRETRAINED_MODELS: dict[str, PretrainedModel] = {
    "transcription": PretrainedModel(
        system="transcription",
        file="transcription_p53.pt",
        commands=(
            "dklfm train transcription --points 30 --out dklfm_explore/datasets/data/transcription_p53.pt --seed 0 --max-minutes 6",
        ),
        description="DKLFM trained for 6 CPU minutes on fresh simulated transcription tasks (5 p53 target genes, "
        "0-12 h, 30 points), kinetics around the p53 network's published values.",
    ),
}


def pretrained_path(system: str) -> Path:
    """Path of the bundled checkpoint for ``system``."""
    try:
        entry = PRETRAINED_MODELS[system]
    except KeyError:
        raise UnknownNameError("pretrained model", system, PRETRAINED_MODELS) from None
    if not entry.path.is_file():
        raise InvalidInputError(
            f"The pretrained {system} model is not installed at {entry.path}; make it with: " + " && ".join(entry.commands)
        )
    return entry.path


def load_pretrained(system: str = "transcription", device=None):
    """Load the bundled :class:`~dklfm_explore.trained.TrainedModel` for ``system``."""
    from ..trained import load_model

    return load_model(pretrained_path(system), device=device)
