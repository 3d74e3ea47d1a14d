"""Checkpoint files: a dict of weights, settings and provenance written with :func:`torch.save`.

This module reads and writes the payload and checks its layout; building a
:class:`~dklfm_explore.trained.TrainedModel` from it is :func:`~dklfm_explore.trained.load_model`'s.
Files are read with ``weights_only=True``: a checkpoint cannot run code.

Layout (format version 3)::

    format_version, package_version, state_dict, model_config, training_config, normaliser,
    system_name, output_names, time_window, space_window, history, latent_std_scale,
    verdict (dict or None), provenance (dict or None)

Version 1 lacks ``latent_std_scale`` (it loads with 1), versions 1 and 2 lack ``verdict`` and
``provenance`` (they load with None).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch

from .atomic import atomic_write
from .errors import CheckpointError
from .messages import MAX_SHOWN

__all__ = ["write_checkpoint", "read_checkpoint", "CHECKPOINT_FORMAT_VERSION", "READABLE_FORMAT_VERSIONS", "CHECKPOINT_KEYS"]

CHECKPOINT_FORMAT_VERSION = 3
"""Version of the checkpoint layout; bump it when keys or their meaning change (3: ``verdict``, ``provenance``)."""
READABLE_FORMAT_VERSIONS = (1, 2, 3)
CHECKPOINT_KEYS = (
    "format_version", "package_version", "state_dict", "model_config", "training_config", "normaliser",
    "system_name", "output_names", "time_window", "space_window", "history",
)
"""Keys every readable version has."""


def write_checkpoint(payload: dict, path: str | os.PathLike, *, overwrite: bool = True) -> Path:
    """Write ``payload`` to ``path`` atomically; ``overwrite=False`` refuses an existing ``path`` (:func:`~dklfm_explore.atomic.atomic_write`)."""
    path = Path(path)
    with atomic_write(path, overwrite=overwrite) as partial:
        torch.save(payload, partial)
    return path


def read_checkpoint(path: str | os.PathLike) -> dict:
    """Read and check the payload of a checkpoint.

    Raises
    ------
    CheckpointError
        If the file is missing, corrupted, not a dict, of another format version, lacks keys or has a
        field of another form than this package writes (:data:`FIELD_CHECKS`).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"No checkpoint file at {str(path)!r}.")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many unrelated types for a damaged or foreign file
        raise CheckpointError(f"{path.name} is not a readable DKLFM checkpoint (corrupted or another format: {type(error).__name__}).") from error
    if not isinstance(payload, dict):
        raise CheckpointError(f"{path.name} is not a DKLFM checkpoint (it holds a {type(payload).__name__}, not a dict).")
    _check_version(payload, path.name)
    missing = [key for key in CHECKPOINT_KEYS if key not in payload]
    if missing:
        raise CheckpointError(f"{path.name} is missing checkpoint key(s) {', '.join(missing)}.")
    for key, (check, expected) in FIELD_CHECKS.items():
        if key in payload and not check(payload[key]):
            raise CheckpointError(f"{path.name} has a malformed checkpoint field {key!r} ({_described(payload[key])}); it must be {expected}.")
    return payload


def _check_version(payload: dict, source: str) -> None:
    if "format_version" not in payload:
        return
    version = payload["format_version"]
    readable = ", ".join(map(str, READABLE_FORMAT_VERSIONS))
    if type(version) is not int:
        raise CheckpointError(
            f"{source} has a malformed checkpoint field 'format_version' ({_described(version)}); it must be an integer, one of {readable}."
        )
    if version not in READABLE_FORMAT_VERSIONS:
        raise CheckpointError(
            f"{source} has checkpoint format version {version} but this package reads versions {readable}; "
            f"retrain or load it with package version {payload.get('package_version', 'unknown')}."
        )


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_window(value) -> bool:
    return isinstance(value, (list, tuple)) and len(value) == 2 and all(map(_is_number, value)) and value[0] < value[1]


def _is_names(value) -> bool:
    return isinstance(value, (list, tuple)) and len(value) > 0 and all(isinstance(name, str) for name in value) and len(set(value)) == len(value)


FIELD_CHECKS = {
    "package_version": (lambda value: isinstance(value, str), "a version string"),
    "state_dict": (lambda value: isinstance(value, dict) and all(isinstance(v, torch.Tensor) for v in value.values()), "a dict of tensors"),
    "model_config": (lambda value: isinstance(value, dict), "a dict of model settings"),
    "training_config": (lambda value: isinstance(value, dict), "a dict of training settings"),
    "normaliser": (lambda value: isinstance(value, dict), "a dict of normalising statistics"),
    "system_name": (lambda value: isinstance(value, str), "a system name (a string, empty for none)"),
    "output_names": (_is_names, "a list of distinct output names (strings)"),
    "time_window": (_is_window, "two finite increasing times"),
    "space_window": (lambda value: value is None or _is_window(value), "None or two finite increasing positions"),
    "history": (lambda value: isinstance(value, list) and all(isinstance(record, dict) for record in value), "a list of per-epoch dicts"),
    "latent_std_scale": (lambda value: _is_number(value) and value > 0, "a positive finite number"),
    "ood_reference": (lambda value: value is None or isinstance(value, dict), "None or a dict"),
    "verdict": (lambda value: value is None or isinstance(value, dict), "None or a dict"),
    "provenance": (lambda value: value is None or isinstance(value, dict), "None or a dict"),
}
"""Per checkpoint key: whether a stored value has the form this package writes, and that form in words."""


def _described(value) -> str:
    """A stored value for a message: its type and its repr, cut to :data:`~dklfm_explore.messages.MAX_SHOWN` characters."""
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= MAX_SHOWN else text[:MAX_SHOWN] + '...'}"
