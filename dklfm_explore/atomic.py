"""Atomic file writes: a file is either its old content or its complete new content, never partial."""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .errors import InvalidInputError

__all__ = ["atomic_write", "PARTIAL_SUFFIX"]

PARTIAL_SUFFIX = ".partial"


@contextmanager
def atomic_write(path: str | os.PathLike, *, overwrite: bool = True) -> Iterator[Path]:
    """Yield a fresh temporary path beside ``path``; when the block succeeds, move it onto ``path``.

    The temporary name is unique (``.<name>.<random>.partial`` in the target's folder), so two
    writers of one target never share a file, and the final rename is atomic.  A failed or
    interrupted block removes its temporary file and leaves ``path`` untouched.

    Parameters
    ----------
    overwrite : bool
        ``False``: publish only if ``path`` does not exist when the write ends (a hard link, which
        fails rather than replaces), so of two concurrent writers the second one gets an error.

    Raises
    ------
    InvalidInputError
        If ``overwrite`` is ``False`` and ``path`` exists (before or after the write), or the
        folder cannot be written.
    """
    path = Path(path)
    if not overwrite and path.exists():
        raise InvalidInputError(f"{path.name} exists already; choose another name or allow overwriting it (--force).")
    try:
        handle, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=PARTIAL_SUFFIX, dir=path.parent)
    except OSError as error:
        raise InvalidInputError(f"The folder {str(path.parent)!r} cannot be written ({error.strerror}).") from error
    os.close(handle)
    partial = Path(name)
    try:
        yield partial
        if overwrite:
            os.replace(partial, path)
        else:
            _publish_new(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def _publish_new(partial: Path, path: Path) -> None:
    try:
        os.link(partial, path)
    except FileExistsError as error:
        raise InvalidInputError(
            f"{path.name} was created by someone else while this run wrote it (another run with the same output?); "
            "it was left as it is."
        ) from error
    except OSError:
        if path.exists():
            raise InvalidInputError(f"{path.name} was created by someone else while this run wrote it; it was left as it is.") from None
        os.replace(partial, path)
