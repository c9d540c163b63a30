"""The writer's lock of a sweep folder: one ``lipflow sweep`` at a time, its owner on record.

The lock is an ``flock`` on the file ``.lock`` in the folder, which also records the owner
(pid, host, the process's start time and when it took the lock). The kernel drops the flock
when every descriptor of it is closed, so a dead owner normally frees the folder at once;
forked workers close their inherited copy (:func:`release_inherited_locks`). Should a dead
owner's lock still be held (e.g. by an orphan of an older version), a new run on the same host
that finds the recorded owner gone takes the lock over: it replaces the lock file by a fresh
one, and says so.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from lipflow.errors import LipflowError

__all__ = ["LOCK_FILE", "LockOwner", "folder_lock", "owner_alive", "process_start", "release_inherited_locks"]

LOCK_FILE = ".lock"
_HELD: set[int] = set()  # descriptors of the locks this process holds


@dataclass(frozen=True)
class LockOwner:
    pid: int
    host: str
    process_start: str  # the kernel's start time of the pid (clock ticks since boot; "" if unknown)
    locked_at: str  # UTC, ISO 8601

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host}, lock taken {self.locked_at}"


def process_start(pid: int) -> str:
    """The start time of process ``pid`` from /proc (tells a reused pid apart); "" if unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[-1].split()[19]


def owner_alive(owner: LockOwner) -> bool | None:
    """True/False when known; None for an owner on another host."""
    if owner.host != socket.gethostname():
        return None
    try:
        os.kill(owner.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    started = process_start(owner.pid)
    return not (owner.process_start and started and started != owner.process_start)


def _read_owner(descriptor: int) -> LockOwner | None:
    try:
        data = os.pread(descriptor, 4096, 0)
        return LockOwner(**json.loads(data.decode("utf-8")))
    except (OSError, ValueError, TypeError):
        return None


def release_inherited_locks() -> None:
    """In a forked child: close the copies of the parent's lock descriptors, so the lock dies
    with the parent instead of living on in its workers."""
    for descriptor in list(_HELD):
        try:
            os.close(descriptor)
        except OSError:
            pass
    _HELD.clear()


@contextmanager
def folder_lock(root: Path, *, what: str = "`lipflow sweep`") -> Iterator[LockOwner | None]:
    """Hold the lock of ``root``; yields the dead owner taken over, if any (else None)."""
    path = root / LOCK_FILE
    taken_over: LockOwner | None = None
    for _attempt in range(5):
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = _read_owner(descriptor)
            alive = owner_alive(owner) if owner is not None else True
            same_file = _same_file(path, descriptor)
            os.close(descriptor)
            if alive is False and same_file:
                taken_over = owner
                path.unlink(missing_ok=True)  # the dead owner's orphans keep a lock on a file no one opens
                continue
            if not same_file:
                continue
            who = owner.describe() if owner is not None else "an owner not yet recorded"
            hint = "" if alive else " (on another host: if that process is gone, delete " + str(path) + ")"
            raise LipflowError(
                f"{root} is being written by another {what} ({who}){hint}; wait for it to finish "
                "(or stop it) before running this sweep there again"
            ) from None
        if not _same_file(path, descriptor):  # replaced by a take-over between open and flock
            os.close(descriptor)
            continue
        break
    else:
        raise LipflowError(f"could not take the lock {path}: it keeps being replaced; is another sweep starting?")
    me = LockOwner(os.getpid(), socket.gethostname(), process_start(os.getpid()),
                   time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    os.ftruncate(descriptor, 0)
    os.pwrite(descriptor, json.dumps(asdict(me)).encode(), 0)
    _HELD.add(descriptor)
    try:
        yield taken_over
    finally:
        _HELD.discard(descriptor)
        os.close(descriptor)


def _same_file(path: Path, descriptor: int) -> bool:
    try:
        return os.stat(path).st_ino == os.fstat(descriptor).st_ino
    except FileNotFoundError:
        return False
