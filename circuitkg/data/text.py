"""Reading the text of a data file: UTF-8, optionally gzip-compressed (``.gz``).

One reader for triple files, OOKB files, vocabularies and schema files, so every one of them names
the file on a truncated or non-gzip ``.gz`` and the line and column of bytes that are not UTF-8.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

from circuitkg.data.kg import DataFormatError
from circuitkg.errors import CircuitKGError

__all__ = ["read_text"]


def read_text(path: Path, error: type[CircuitKGError] = DataFormatError) -> str:
    """The text of ``path`` (a leading BOM dropped); failures raise ``error`` naming the file."""
    data = path.read_bytes()
    if path.name.endswith(".gz"):
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as err:  # BadGzipFile is an OSError
            raise error(f"{path}: not a complete gzip file ({type(err).__name__}: {err})") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        column = err.start - (data.rfind(b"\n", 0, err.start) + 1) + 1
        raise error(
            f"{path}:{line}: not UTF-8 text (byte {data[err.start]:#04x} at column {column})"
        ) from None
