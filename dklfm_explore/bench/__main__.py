"""``python -m dklfm_explore.bench``: the benchmark harness."""

from .harness import main

main(prog="python -m dklfm_explore.bench")
