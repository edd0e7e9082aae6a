"""The image check of a large async batch, run in a child process beside the event loop.

An async batch verifies every image (:func:`._verify_image.verify_bytes`: Pillow reads the
header, the pixel cap, every chunk's CRC and the whole ``IDAT`` stream inflated, the SHA-256).
On the event loop that is ~0.9 ms per generated image, a quarter of what a job costs there, and
threads cannot take it over (each wakes for the GIL up to the 5 ms switch interval while the loop
is busy: ``benchmarks/RESULTS.md``). So a batch that has checked :data:`START_AFTER` images at
concurrency :data:`MIN_CONCURRENCY` or more starts one child process and hands it each small
PNG's bytes over a pipe; the loop keeps only the writing and the reading of the answer.

The child is a fast path, never a dependency: while it starts, when it cannot be started, when it
dies or does not answer within :data:`ANSWER_TIMEOUT_S`, every image is checked inline as before
(and the batch stops using the child). Only an image the child verified is taken on its word (its
type, size and SHA-256); any fault it finds is checked again here, so every refusal is worded as
it always was. The image bytes stay in this process. ``MODELGLASS_CHECK_PROCESS=0`` turns it off.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from ._env import switched_off
from ._verify_image import ANSWER, ASK, DEFAULT_MAX_PIXELS, VERIFIED, Fetched, verified

log = logging.getLogger("modelglass")

__all__ = ["ANSWER_TIMEOUT_S", "MIN_CONCURRENCY", "START_AFTER", "CheckProcess",
           "CheckProcessGone", "enabled"]

#: Images a batch checks inline before it starts the child (a small batch never starts one).
START_AFTER = 16
#: The least concurrency at which a batch uses the child (below it the loop has time to spare).
MIN_CONCURRENCY = 8
#: Longest wait for one answer; past it the child is taken for stuck, stopped, and not used again.
ANSWER_TIMEOUT_S = 10.0

# The child loads the package's verify module alone: a stand-in package whose path is the real
# one, so ``modelglass/__init__.py`` (routing, pydantic, the catalog) is never imported there.
_BOOT = ("import sys, types\n"
         "pkg = types.ModuleType('modelglass')\n"
         "pkg.__path__ = [sys.argv[1]]\n"
         "sys.modules['modelglass'] = pkg\n"
         "from modelglass._verify_image import serve\n"
         "serve(sys.stdin.buffer, sys.stdout.buffer)\n")


def enabled() -> bool:
    """Whether batches may use a check process (``MODELGLASS_CHECK_PROCESS=0``: never)."""
    return not switched_off("MODELGLASS_CHECK_PROCESS")


class CheckProcessGone(Exception):
    """The child did not give an answer (it could not start, died, or took too long): check
    the image inline."""


class CheckProcess:
    """One child process answering :func:`._verify_image.verify_bytes` for one event loop.

    :meth:`start` returns at once; :attr:`ready` says when answers may be asked for.
    :meth:`verify` returns the verified image or raises :class:`CheckProcessGone`; :meth:`aclose` ends
    the child (it also ends by itself when this process dies: its input closes). Its answers
    are read by a protocol on the loop (no task, no timer per image); one watchdog gives up on
    the child when an answer is :data:`ANSWER_TIMEOUT_S` late.
    """

    def __init__(self) -> None:
        self._proc: asyncio.SubprocessTransport | None = None
        self._stdin: Any = None
        self._pending: dict[int, tuple[asyncio.Future[tuple[int, str]], float]] = {}
        self._ids = itertools.count()
        self._gone = False
        self._exited: asyncio.Future[None] | None = None
        self._watchdog: asyncio.TimerHandle | None = None
        self._spawning: asyncio.Task[None] | None = None

    @classmethod
    def start(cls) -> CheckProcess:
        """A check process starting in the background on the running loop."""
        self = cls()
        self._spawning = asyncio.ensure_future(self._spawn())
        return self

    @property
    def ready(self) -> bool:
        """Started and not given up on."""
        return self._proc is not None and not self._gone

    @property
    def pid(self) -> int | None:
        """The child's process id while it runs (None before it started or once it ended)."""
        return self._proc.get_pid() if self._proc is not None else None

    async def _spawn(self) -> None:
        loop = asyncio.get_running_loop()
        self._exited = loop.create_future()
        try:
            proc, _ = await loop.subprocess_exec(
                lambda: _Answers(self), sys.executable, "-P", "-c", _BOOT,
                str(Path(__file__).resolve().parent), stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=_child_env())
        except Exception as exc:  # noqa: BLE001 - no subprocesses here (a sandbox, a loop
            # without them, a frozen app): inline, as before
            log.debug("modelglass: no check process (%s); checking images inline", exc)
            self._gone = True
            return
        stdin: Any = proc.get_pipe_transport(0)
        if self._gone or stdin is None:  # closed while it started
            proc.close()
            return
        # Many images may wait in the pipe at once: the loop never waits for it to drain, and
        # a pipe of 1 MiB (Linux; 64 KiB by default) takes an image in one write.
        stdin.set_write_buffer_limits(high=64 << 20)
        with contextlib.suppress(ImportError, AttributeError, OSError, ValueError):
            import fcntl

            fcntl.fcntl(stdin.get_extra_info("pipe").fileno(), fcntl.F_SETPIPE_SZ, 1 << 20)
        self._proc, self._stdin = proc, stdin
        self._watchdog = loop.call_later(ANSWER_TIMEOUT_S / 2, self._watch)

    def _answered(self, ident: int, kind: int, message: str) -> None:
        waiting = self._pending.pop(ident, None)
        if waiting is not None and not waiting[0].done():
            waiting[0].set_result((kind, message))

    def _watch(self) -> None:
        self._watchdog = None
        if self._gone:
            return
        loop = asyncio.get_running_loop()
        # the first entry is the oldest question still open (asked in order of their ids)
        oldest = next(iter(self._pending.values()), None)
        if oldest is not None and loop.time() - oldest[1] > ANSWER_TIMEOUT_S:
            self._give_up(f"gave no answer in {ANSWER_TIMEOUT_S:g} s")
            return
        self._watchdog = loop.call_later(ANSWER_TIMEOUT_S / 2, self._watch)

    def _give_up(self, why: str, *, kill: bool = True) -> None:
        if not self._gone:
            log.debug("modelglass: the check process %s; checking images inline", why)
        self._gone = True
        pending, self._pending = self._pending, {}
        for future, _ in pending.values():
            if not future.done():
                future.set_exception(CheckProcessGone(why))
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        if kill and self._proc is not None and self._proc.get_returncode() is None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.kill()

    async def verify(self, data: bytes, *, mime_hint: str | None = None,
                     provider: str | None = None,
                     max_pixels: int = DEFAULT_MAX_PIXELS) -> Fetched:
        """``verify_bytes(data, mime_hint, provider=provider, max_pixels=max_pixels)``, run by
        the child. Raises :class:`CheckProcessGone` when it gives no verified image (it is not
        running, died, or found a fault: check ``data`` here)."""
        if self._gone or self._stdin is None or self._stdin.is_closing():
            raise CheckProcessGone("it is not running")
        loop = asyncio.get_running_loop()
        ident = next(self._ids) & 0xFFFFFFFF
        future: asyncio.Future[tuple[int, str]] = loop.create_future()
        self._pending[ident] = (future, loop.time())
        try:
            self._stdin.write(ASK.pack(ident, len(data), max_pixels) + data)
            kind, message = await future
        except (OSError, RuntimeError) as exc:
            self._give_up(f"could not be written to ({exc})")
            raise CheckProcessGone(str(exc)) from None
        finally:
            self._pending.pop(ident, None)
        if kind != VERIFIED:
            raise CheckProcessGone(f"it found a fault ({message}): check it here")
        try:
            return verified(data, message, mime_hint, provider)
        except ValueError as exc:
            self._give_up(str(exc))
            raise CheckProcessGone(str(exc)) from None

    async def aclose(self) -> None:
        """End the child (its input closed, then killed if it lingers)."""
        if self._spawning is not None and not self._spawning.done():
            self._spawning.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._spawning
        self._give_up("was closed", kill=False)  # it exits at the end of its input
        proc, self._proc, self._stdin = self._proc, None, None
        if proc is None:
            return
        stdin = proc.get_pipe_transport(0)
        if stdin is not None:
            stdin.close()  # the child reads the end of its input and exits
        if self._exited is not None and proc.get_returncode() is None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._exited), 2.0)
        proc.close()  # kills it if it still runs; closes the pipes


class _Answers(asyncio.SubprocessProtocol):
    """Reads the child's answers as they arrive and hands each to the question's future."""

    def __init__(self, owner: CheckProcess) -> None:
        self.owner = owner
        self.buf = bytearray()

    def pipe_data_received(self, fd: int, data: bytes | bytearray) -> None:
        if fd != 1:
            return
        buf = self.buf
        buf += data
        size = ANSWER.size
        while len(buf) >= size:
            ident, kind, length = ANSWER.unpack_from(buf)
            if len(buf) < size + length:
                break
            message = bytes(buf[size:size + length]).decode("utf-8", "replace")
            del buf[:size + length]
            self.owner._answered(ident, kind, message)

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        if fd in (0, 1):
            self.owner._give_up("stopped answering")

    def process_exited(self) -> None:
        self.owner._give_up("exited")
        exited = self.owner._exited
        if exited is not None and not exited.done():
            exited.set_result(None)


#: Parts of variable names the child's environment leaves out: it needs no credential.
_SECRET_NAMES = ("KEY", "TOKEN", "SECRET", "PASSWORD", "CREDENTIAL", "AUTH")


def _child_env() -> dict[str, str]:
    """This process's environment without its credentials (API keys and the like), with
    glibc's allocator told to keep the PNG check's 256 KiB buffers: by default it maps and
    unmaps them each time (measured: 171 page faults and 1.3 ms per 1024 x 1024 image, 0.65 ms
    with these)."""
    env = {name: value for name, value in os.environ.items()
           if not any(part in name.upper() for part in _SECRET_NAMES)}
    env.setdefault("MALLOC_MMAP_THRESHOLD_", str(4 << 20))
    env.setdefault("MALLOC_TRIM_THRESHOLD_", str(32 << 20))
    return env


class BatchChecks:
    """What one async batch's jobs ask for a check process: none until the batch has checked
    :data:`START_AFTER` images (at concurrency :data:`MIN_CONCURRENCY` or more), then the one it
    started, while it is ready."""

    def __init__(self, concurrency: int) -> None:
        self._wanted = concurrency >= MIN_CONCURRENCY and enabled()
        self._count = 0
        self._process: CheckProcess | None = None

    def process(self) -> CheckProcess | None:
        """The batch's ready check process, or None (check inline); counts the image."""
        proc = self._process
        if proc is not None:
            return proc if proc.ready else None
        if self._wanted:
            self._count += 1
            if self._count > START_AFTER:
                self._process = CheckProcess.start()
        return None

    async def aclose(self) -> None:
        if self._process is not None:
            await self._process.aclose()
