"""Values quoted in one-sentence error messages, cut so that a huge cell or a long list never floods the screen."""

from __future__ import annotations

__all__ = ["MAX_SHOWN", "MAX_LISTED", "shown", "listed"]

MAX_SHOWN = 40
"""Offending values are shown up to this many characters."""
MAX_LISTED = 200
"""Lists of names in a message are cut after this many characters."""


def shown(text: str) -> str:
    """``text`` quoted for a message, cut to :data:`MAX_SHOWN` characters."""
    text = str(text)
    return repr(text) if len(text) <= MAX_SHOWN else repr(text[:MAX_SHOWN]) + f"... ({len(text)} characters)"


def listed(names) -> str:
    """``names`` joined by commas for a message, cut to :data:`MAX_LISTED` characters."""
    names = [str(name) for name in names]
    text = ", ".join(names)
    return text if len(text) <= MAX_LISTED else f"{text[:MAX_LISTED]}... ({len(names)} names)"
