"""Run metadata for the scripts in this folder; it lives in :mod:`dklfm_explore.bench.provenance`."""

from dklfm_explore.bench.provenance import RESULTS, git_commit, header, write_json

__all__ = ["RESULTS", "git_commit", "header", "write_json"]
