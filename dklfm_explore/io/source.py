"""Where measurements come from: read a path, bytes or file object, tell netCDF from text, decode the text."""

from __future__ import annotations

from pathlib import Path

from ..errors import InvalidInputError
from .format import MAX_SHOWN, MIN_POINTS

__all__ = ["read_source", "is_netcdf", "decode", "CLASSIC_NETCDF_MAGIC", "NETCDF_MAGIC"]

NETCDF_MAGIC = (b"\x89HDF\r\n\x1a\n", b"CDF\x01", b"CDF\x02", b"CDF\x05")
NETCDF_SUFFIXES = (".nc", ".nc4", ".netcdf")
CLASSIC_NETCDF_MAGIC = b"CDF"
ZIP_MAGIC = b"PK\x03\x04"
UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
BINARY_FRACTION = 0.1
BINARY_SNIFF_BYTES = 4096
"""Text with more than this share of control bytes (other than tab, CR, LF) in its first
``BINARY_SNIFF_BYTES`` bytes is reported as binary."""


def is_netcdf(data: bytes, source: str) -> bool:
    """Whether the content (by its magic bytes) or the name (by its suffix) is netCDF."""
    return data.startswith(NETCDF_MAGIC) or source.lower().endswith(NETCDF_SUFFIXES)


def read_source(source, name: str | None) -> tuple[bytes, str]:
    """The content and the name to use in messages of a path, bytes or binary file object."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source), name or "upload"
    if hasattr(source, "read"):
        data = source.read()
        if not isinstance(data, (bytes, bytearray)):
            raise InvalidInputError("The measurement file object must be opened in binary mode ('rb').")
        return bytes(data), name or str(getattr(source, "name", "upload"))
    path = Path(source)
    try:
        is_file = path.is_file()
    except (OSError, ValueError):
        is_file = False
    if not is_file:
        raise InvalidInputError(f"No measurement file at {str(path)[:MAX_SHOWN]!r}.")
    try:
        return path.read_bytes(), name or path.name
    except OSError as error:
        raise InvalidInputError(f"{path.name} cannot be read ({error.strerror}).") from error


def decode(data: bytes, source: str) -> str:
    """The text of CSV content; an empty, zip, binary or non-UTF-8 content is refused in one sentence."""
    if not data.strip():
        raise InvalidInputError(f"{source} is empty; it needs a header row and at least {MIN_POINTS} data rows.")
    if data.startswith(ZIP_MAGIC):
        raise InvalidInputError(f"{source} is a zip archive (an Excel workbook?), not CSV text; export it as CSV (UTF-8).")
    if data.startswith(UTF16_BOMS):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError as error:
            raise InvalidInputError(f"{source} starts like UTF-16 text but is not; save it as CSV (UTF-8).") from error
    head = data[:BINARY_SNIFF_BYTES]
    controls = sum(byte < 9 or 13 < byte < 32 for byte in head)
    if b"\x00" in data or controls > BINARY_FRACTION * len(head):
        raise InvalidInputError(f"{source} looks like a binary file, not CSV text; upload a CSV or a netCDF file.")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise InvalidInputError(
            f"{source} is not UTF-8 text (byte 0x{data[error.start]:02x} on line {line}); "
            "save it as CSV (UTF-8)."
        ) from error
