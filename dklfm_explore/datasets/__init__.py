"""Real data sets bundled with the package, and the registry that lists them.

Each data set is one module that loads its files from ``data/`` and registers a
:class:`BundledDataset`; add a new one by writing such a module and importing it
here::

    from dklfm_explore.datasets import DATASETS, load_dataset
    tasks = load_dataset("p53-5gy")          # TaskSet (task=3, output=5, time=7)
"""

from .p53 import P53_CITATION, P53_DOSES, P53_PROBES, load_p53, write_p53_csvs
from .pretrained import PRETRAINED_MODELS, PretrainedModel, load_pretrained, pretrained_path
from .registry import DATA_DIR, DATASETS, BundledDataset, get_dataset, load_dataset, register_dataset

__all__ = [
    "DATASETS",
    "DATA_DIR",
    "BundledDataset",
    "get_dataset",
    "load_dataset",
    "register_dataset",
    "load_p53",
    "write_p53_csvs",
    "P53_DOSES",
    "P53_PROBES",
    "P53_CITATION",
    "PRETRAINED_MODELS",
    "PretrainedModel",
    "load_pretrained",
    "pretrained_path",
]
