"""Atomic file output: a result file is either complete or absent, never half-written."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from lipflow.errors import LipflowError

__all__ = ["atomic_open", "atomic_path", "atomic_savefig", "atomic_write_text", "check_output_folder"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` atomically."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(handle)
    os.chmod(temporary, 0o666 & ~_umask())  # mkstemp makes it owner-only; result files get the usual mode
    try:
        yield Path(temporary)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


@contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "w", **kwargs: Any) -> Iterator[IO[Any]]:
    """``open`` for writing whose result appears only when the block finishes without error."""
    with atomic_path(path) as temporary, open(temporary, mode, **kwargs) as stream:
        yield stream
        stream.flush()
        os.fsync(stream.fileno())


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    with atomic_open(path, "w", encoding="utf-8") as stream:
        stream.write(text)


def atomic_savefig(figure: Any, path: str | os.PathLike[str], **kwargs: Any) -> None:
    """``figure.savefig`` through a temporary file (the format comes from ``path``'s suffix)."""
    suffix = Path(path).suffix.lstrip(".") or "png"
    save: Callable[..., None] = figure.savefig
    with atomic_path(path) as temporary:
        save(temporary, format=suffix, **kwargs)


def check_output_folder(path: str | os.PathLike[str], flag: str = "--out") -> None:
    """A :class:`LipflowError` unless ``path`` is, or can be created as, a folder this process
    can write in: not a file, not under a file, not in a read-only or immutable folder.

    Creates nothing (the probe file it writes into the nearest existing folder is removed).
    """
    target = Path(path)
    if target.exists() and not target.is_dir():
        raise LipflowError(f"{flag} {str(target)!r} is a file; give a folder")
    existing = target
    while not existing.exists():
        if existing.is_symlink():
            raise LipflowError(f"{flag} {str(target)!r}: {str(existing)!r} is a broken link")
        existing = existing.parent
    if not existing.is_dir():
        raise LipflowError(f"{flag} {str(target)!r} cannot be created: {str(existing)!r} is a file, not a folder")
    try:
        handle, probe = tempfile.mkstemp(prefix=".lipflow-write-test.", dir=existing)
    except OSError as error:
        where = "" if existing == target else f" (its nearest existing folder {str(existing)!r})"
        raise LipflowError(f"{flag} {str(target)!r} is not writable{where}: {error.strerror or error}; "
                           "choose a folder you can write to") from None
    os.close(handle)
    os.unlink(probe)
