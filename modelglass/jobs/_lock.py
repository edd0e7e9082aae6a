"""One owner per journal: an exclusive lock held for the whole run.

Two batches on one journal would both see a job ``pending`` and both pay for it. So a run takes
``<journal>.lock`` before it reads a row, and keeps it until the journal is closed:

- POSIX: ``flock`` on the lock file. The kernel drops the lock when its holder dies (SIGKILL
  included), so a stale lock is simply free: the next run takes it and overwrites the holder's
  line. The file is never deleted (deleting a locked file lets two runs lock two inodes).
- Elsewhere: the file is created exclusively; a lock whose pid is gone on this host is stale
  and is taken over.

The file says who holds it (pid, host, start time), so a refused run can name the holder.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from ..errors import JournalError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["JournalLock"]


class JournalLock:
    """The exclusive lock of one journal file (``<journal>.lock`` next to it)."""

    def __init__(self, journal: Path) -> None:
        self.journal = journal
        self.path = journal.with_name(journal.name + ".lock")
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock, or raise :class:`JournalError` naming the run that holds it."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise JournalError(f"cannot create the journal's lock file {self.path}: "
                               f"{exc.strerror}; make its folder writable or choose another "
                               f"--journal", path=str(self.journal)) from None
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read(fd)
                os.close(fd)
                raise self._busy(holder) from None
        else:  # pragma: no cover - no flock: the holder's pid says whether it is alive
            holder = _read(fd)
            if holder and _alive(holder):
                os.close(fd)
                raise self._busy(holder)
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(_me()).encode())
        self._fd = fd

    def release(self) -> None:
        """Give the lock back (the file stays, emptied)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        os.close(fd)  # closing drops the flock

    def _busy(self, holder: dict[str, Any]) -> JournalError:
        who = (f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}, started "
               f"{holder.get('started', '?')}") if holder else "another process"
        return JournalError(
            f"the journal {self.journal} is in use by another run ({who}; lock {self.path}). "
            f"Two runs on one journal would pay for the same jobs twice: wait for that run to "
            f"finish (or stop it), or give this one another --journal.",
            path=str(self.journal), holder=holder or None)


def _me() -> dict[str, Any]:
    return {"pid": os.getpid(), "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def _read(fd: int) -> dict[str, Any]:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        data = json.loads(os.read(fd, 4096) or b"{}")
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _alive(holder: dict[str, Any]) -> bool:  # pragma: no cover - used without flock only
    if holder.get("host") != socket.gethostname():
        return True  # another host's pid cannot be checked from here: assume it runs
    try:
        os.kill(int(holder.get("pid", 0)), 0)
    except ProcessLookupError:
        return False
    except (OSError, ValueError):
        return True
    return True
