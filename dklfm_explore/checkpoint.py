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

import os
from pathlib import Path

import torch

from .atomic import atomic_write
from .errors import CheckpointError

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
        If the file is missing, corrupted, not a dict, of another format version or lacks keys.
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
    version = payload.get("format_version")
    if "format_version" in payload and (isinstance(version, bool) or version not in READABLE_FORMAT_VERSIONS):
        raise CheckpointError(
            f"{path.name} has checkpoint format version {version!r} but this package reads versions "
            f"{', '.join(map(str, READABLE_FORMAT_VERSIONS))}; retrain or load it with package version "
            f"{payload.get('package_version', 'unknown')}."
        )
    missing = [key for key in CHECKPOINT_KEYS if key not in payload]
    if missing:
        raise CheckpointError(f"{path.name} is missing checkpoint key(s) {', '.join(missing)}.")
    return payload
