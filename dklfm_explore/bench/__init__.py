"""The benchmark harness: DKLFM beside its peers on the same tasks, in one run (``dklfm bench``).

The scripts that are not part of the harness, and the recorded results, stay in the checkout's
``benchmarks/`` folder.
"""

from .harness import main
from .settings import FAMILIES, ROW_KEYS, TEST_SEED, TRAIN_SEED, Settings

__all__ = ["main", "FAMILIES", "ROW_KEYS", "Settings", "TRAIN_SEED", "TEST_SEED"]
