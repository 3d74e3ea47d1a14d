"""The Panel dashboard: param view models over the core (the only package that imports panel)."""

from .base import Session
from .explorer import Explorer, explorer

__all__ = ["explorer", "Explorer", "Session"]
