"""Crash-safe replacement of a folder of files, and recovery from an interrupted one.

:func:`replace_folder` writes the new files to the sibling ``<name>.tmp`` (every file and the folder
fsynced), renames the old folder to ``<name>.old``, renames the new one into place, fsyncs the
parent and removes ``<name>.old``: at every instant an intact folder exists under ``<name>``, or
(between the two renames) under ``<name>.old`` with a complete ``<name>.tmp``.
:func:`recover_folder` finishes an interrupted swap. Files are created with the process's umask.
Checkpoints (:mod:`circuitkg.train.checkpoint`) are written this way.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path

#: suffixes of the folders an interrupted write leaves next to the folder
TMP_SUFFIX, OLD_SUFFIX = ".tmp", ".old"


def sibling(path: Path, suffix: str) -> Path:
    """``path`` with ``suffix`` appended to its name."""
    return path.with_name(path.name + suffix)


def replace_folder(path: Path, files: Mapping[str, bytes]) -> None:
    """Replace the folder ``path`` by one holding ``files`` (name to contents), crash-safely; the
    last file of ``files`` should be the one that marks the folder complete."""
    tmp, old = sibling(path, TMP_SUFFIX), sibling(path, OLD_SUFFIX)
    if tmp.exists():
        shutil.rmtree(tmp)  # incomplete (a recovery would have promoted a complete one)
    tmp.mkdir(parents=True)
    for name, data in files.items():
        _write_synced(tmp / name, data)
    _fsync_dir(tmp)
    if path.exists():
        os.replace(path, old)
    os.replace(tmp, path)
    _fsync_dir(path.parent)
    if old.exists():
        shutil.rmtree(old)


def recover_folder(
    path: Path, marker: str, complete: Callable[[Path], bool]
) -> tuple[bool, str | None]:
    """Finish an interrupted :func:`replace_folder` of ``path``: whether a folder with ``marker``
    is there afterwards, and what it was restored from (``None``: nothing was restored).

    With ``path`` intact (``marker`` there), leftover ``.old`` and incomplete ``.tmp`` folders are
    removed. With ``path`` missing, a ``complete`` ``.tmp`` is promoted, else a complete ``.old``;
    an incomplete ``.tmp`` is kept when nothing else exists (so no data is destroyed)."""
    tmp, old = sibling(path, TMP_SUFFIX), sibling(path, OLD_SUFFIX)
    if (path / marker).is_file():
        if old.exists():
            shutil.rmtree(old)
        if tmp.exists() and not complete(tmp):
            shutil.rmtree(tmp)
        return True, None
    for source, why in (
        (tmp, "the write of its replacement had completed"),
        (old, "the previous version was intact"),
    ):
        if source.is_dir() and complete(source):
            if path.exists():  # a folder without the marker: keep it aside
                os.replace(path, sibling(path, ".broken"))
            os.replace(source, path)
            _fsync_dir(path.parent)
            if old.exists():
                shutil.rmtree(old)
            return True, f"{source.name} ({why})"
    return False, None


def _write_synced(file: Path, data: bytes) -> None:
    """Write ``data`` to a new ``file`` (mode from the umask) and fsync it."""
    with open(file, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # platforms without directory handles
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
