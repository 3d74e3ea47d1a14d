"""The registry of bundled real data sets."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..data import TaskSet
from ..errors import UnknownNameError

__all__ = ["BundledDataset", "DATASETS", "DATA_DIR", "register_dataset", "get_dataset", "load_dataset"]

DATA_DIR = Path(__file__).parent / "data"
"""Folder of the bundled files (package data: ``data/*.csv``, ``data/*.md``, ``data/*.pt``)."""

DATASETS: dict[str, "BundledDataset"] = {}
"""Bundled data sets by name, e.g. ``"p53-5gy"``."""


@dataclass(frozen=True)
class BundledDataset:
    """A real data set shipped with the package.

    Attributes
    ----------
    name : str
        Registry key, e.g. ``"p53-5gy"``.
    title : str
        Human title for the dashboard.
    description : str
        Two or three sentences: what was measured, where, in which units.
    system : str
        Name of the registered system whose outputs these are.
    citation : str
        The publication to cite.
    csv : str
        File name in :data:`DATA_DIR` of the same data in the CSV upload format.
    loader : callable
        Returns the data as a :class:`TaskSet`.
    """

    name: str
    title: str
    description: str
    system: str
    citation: str
    csv: str
    loader: Callable[[], TaskSet]

    def load(self) -> TaskSet:
        """Return the data set as a task set."""
        return self.loader()

    @property
    def csv_path(self) -> Path:
        """Path of the data in the CSV upload format (for a download button)."""
        return DATA_DIR / self.csv


def register_dataset(dataset: BundledDataset) -> BundledDataset:
    """Add ``dataset`` to :data:`DATASETS` under its name and return it."""
    DATASETS[dataset.name] = dataset
    return dataset


def get_dataset(name: str) -> BundledDataset:
    """Return the bundled data set called ``name``.

    Raises
    ------
    UnknownNameError
        If there is none, listing the valid names.
    """
    try:
        return DATASETS[name]
    except KeyError:
        raise UnknownNameError("data set", str(name), DATASETS) from None


def load_dataset(name: str) -> TaskSet:
    """Load the bundled data set called ``name`` as a task set."""
    return get_dataset(name).load()
