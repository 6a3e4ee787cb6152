"""The one way the suite writes a file: to a temporary file beside the target,
then an atomic rename, so a reader (or a crash) never sees half a file.

``durable=True`` also fsyncs the file and its folder (the study store's raw
copies and manifest survive a power cut); outputs get ordinary permissions
(mkstemp makes 0600) unless ``mode`` says otherwise.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

__all__ = ["atomic_write", "write_bytes", "place_file", "current_umask", "fsync_dir"]


def current_umask() -> int:
    """The process umask (read without changing it), for files made with mkstemp's 0600."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable (POSIX: the directory entry is data too)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, write: Callable[[Path], None], *, durable: bool = False,
                 mode: int | None = None, prefix: str | None = None) -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then move it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=prefix or f".{path.name}.", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        if durable:
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
        os.chmod(tmp, mode if mode is not None else 0o666 & ~current_umask())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        fsync_dir(path.parent)
    return path


def write_bytes(path: Path, data: bytes, **options) -> Path:
    """``data`` at ``path``, atomically."""
    return atomic_write(path, lambda tmp: tmp.write_bytes(data), **options)


def place_file(src: Path, dest: Path, *, copy: bool = False) -> Path:
    """Put the file ``src`` at ``dest`` atomically (a copy, then ``src`` removed unless ``copy``)."""
    src = Path(src)
    atomic_write(Path(dest), lambda tmp: shutil.copyfile(src, tmp))
    if not copy:
        src.unlink(missing_ok=True)
    return Path(dest)
