"""The installed package's version, recorded in every task set and checkpoint."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

__all__ = ["package_version"]


def package_version() -> str:
    """The version of the installed ``dklfm-explore`` distribution (``0+unknown`` when run from a source tree)."""
    try:
        return version("dklfm-explore")
    except PackageNotFoundError:
        return "0+unknown"
