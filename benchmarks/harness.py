"""``python -m benchmarks.harness``: the benchmark harness, which lives in :mod:`dklfm_explore.bench`."""

from dklfm_explore.bench.harness import *  # noqa: F401,F403  (the names tune.py and older callers import)
from dklfm_explore.bench.harness import main

if __name__ == "__main__":
    main(prog="python -m benchmarks.harness")
