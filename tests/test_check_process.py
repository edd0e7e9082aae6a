"""The PNG data check of a large async batch in a child process (``_check_process.py``, issue 16
item 8): the same verdicts as the check run here, used by the batch once it has checked enough
images, and never a reason to lose or fail an image — a child that cannot start, dies, or goes
silent leaves every image checked inline."""

from __future__ import annotations

import asyncio
import os
import signal
import struct
import sys
import zlib
from types import SimpleNamespace
from typing import Any

import pytest

import modelglass as mg
from modelglass import _check_process
from modelglass._check_process import BatchChecks, CheckProcess, CheckProcessGone
from modelglass._png_check import check_png
from modelglass._verify_image import _PILLOW
from modelglass.jobs._delivery import Download
from modelglass.providers.base import RawImage
from modelglass.testing import render_image, simulate


def _chunk(ctype: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + ctype + body + struct.pack(">I", zlib.crc32(ctype + body))


def _png(raw: bytes, width: int = 4, height: int = 2, extra: bytes = b"") -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + extra
            + _chunk(b"IDAT", zlib.compress(raw)) + _chunk(b"IEND", b""))


GOOD = render_image("a red bicycle", 1, 256, 128)
SCANLINES = bytes([0] + [7] * 12) * 2  # 2 rows of 4 RGB pixels, filter type 0
CASES = {
    "good": GOOD,
    "small good": _png(SCANLINES),
    "short image data": _png(SCANLINES[:20]),
    "bad filter type": _png(bytes([9]) + SCANLINES[1:]),
    "bad CRC": GOOD[:40] + bytes([GOOD[40] ^ 0xFF]) + GOOD[41:],
    "cut short": GOOD[:len(GOOD) // 2],
    "not deflate": _png(SCANLINES)[:33] + _chunk(b"IDAT", b"\x00" * 12) + _chunk(b"IEND", b""),
    "animated (Pillow's)": _png(SCANLINES, extra=_chunk(b"acTL", b"\x00\x00\x00\x01" * 2)),
}


@pytest.fixture
async def process() -> Any:
    proc = CheckProcess.start()
    for _ in range(200):
        if proc.ready:
            break
        await asyncio.sleep(0.05)
    assert proc.ready, "the check process did not start in 10 s"
    yield proc
    await proc.aclose()


async def test_the_child_gives_the_verdicts_the_check_gives_here(process: CheckProcess) -> None:
    answers = await asyncio.gather(*(process.check(data) for data in CASES.values()))
    here = [check_png(data) for data in CASES.values()]
    assert answers == here
    assert answers[0] is None and answers[1] is None
    assert answers[-1] is _PILLOW  # the same object: verify_bytes tests it with `is`
    assert all(isinstance(a, str) and a for a in answers[2:-1])


async def test_a_dead_child_fails_every_wait_at_once_and_is_not_used_again(
        process: CheckProcess) -> None:
    assert await process.check(GOOD) is None
    assert process.pid is not None
    os.kill(process.pid, signal.SIGKILL)
    with pytest.raises(CheckProcessGone):
        await asyncio.wait_for(process.check(GOOD), 5)  # never a hang
    assert not process.ready
    with pytest.raises(CheckProcessGone):
        await process.check(GOOD)


async def test_a_cancelled_wait_leaves_the_child_answering_the_next(
        process: CheckProcess) -> None:
    waiting = asyncio.ensure_future(process.check(GOOD))
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert await process.check(CASES["bad filter type"]) == check_png(CASES["bad filter type"])
    assert process._pending == {}


async def test_closing_ends_the_child(process: CheckProcess) -> None:
    pid = process.pid
    assert pid is not None and await process.check(GOOD) is None
    await process.aclose()
    with pytest.raises(ProcessLookupError):  # it exited and was reaped
        os.kill(pid, 0)
    assert not process.ready and process.pid is None


# -- in a batch ---------------------------------------------------------------------------------
def _jobs(n: int) -> list[dict[str, Any]]:
    return [{"id": f"j{i}", "prompt": f"checked job {i}", "quality": "thumbnail",
             "model": "gpt-image-2", "provider": "openai", "seed": i} for i in range(n)]


@pytest.fixture
def early(monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    """Batches start their check process after 2 images at any concurrency: ``started``, the
    processes they started; ``answered``, the verdicts those gave."""
    monkeypatch.setattr(_check_process, "START_AFTER", 2)
    monkeypatch.setattr(_check_process, "MIN_CONCURRENCY", 1)
    seen = SimpleNamespace(started=[], answered=[])
    real_start = CheckProcess.start.__func__  # type: ignore[attr-defined]
    real_check = CheckProcess.check

    def start(cls: type[CheckProcess]) -> CheckProcess:
        seen.started.append(real_start(cls))
        return seen.started[-1]

    async def check(self: CheckProcess, data: bytes) -> Any:
        verdict = await real_check(self, data)
        seen.answered.append(verdict)
        return verdict

    monkeypatch.setattr(CheckProcess, "start", classmethod(start))
    monkeypatch.setattr(CheckProcess, "check", check)
    return seen


async def _batch(n: int, concurrency: int = 4) -> list[Any]:
    async with mg.AsyncClient(available=["openai"], observed=False) as client:
        return [o async for o in client.agenerate_many(_jobs(n), concurrency=concurrency,
                                                       limits={})]


async def test_a_large_batch_checks_its_images_in_the_child_and_ends_it(
        early: SimpleNamespace) -> None:
    with simulate() as sim:
        outcomes = await _batch(24)
        assert sorted(o.status for o in outcomes) == ["done"] * 24
        assert len(sim.requests("openai", stage="generate")) == 24  # each paid for once
    assert len(early.started) == 1
    assert len(early.answered) >= 10 and set(early.answered) == {None}
    child = early.started[0]
    assert not child.ready and child._proc is None  # ended with the batch
    for o in outcomes:  # every image verified: its real size and hash
        image = o.result.images[0]
        assert image.width > 0 and len(image.sha256) == 64


async def test_a_small_or_switched_off_batch_starts_no_child(
        early: SimpleNamespace, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_check_process, "START_AFTER", 64)
    with simulate():
        assert sorted(o.status for o in await _batch(12)) == ["done"] * 12
    monkeypatch.setattr(_check_process, "START_AFTER", 2)
    monkeypatch.setenv("MODELGLASS_CHECK_PROCESS", "0")
    with simulate():
        assert sorted(o.status for o in await _batch(12)) == ["done"] * 12
    assert early.started == [] and early.answered == []


@pytest.mark.parametrize("child", [
    "import sys; sys.stdin.buffer.read(8)",  # reads one request, then dies
    "import sys, time\nwhile sys.stdin.buffer.read(1 << 16): pass",  # reads, never answers
    "raise SystemExit(3)",  # dies at once
])
async def test_a_child_that_dies_or_goes_silent_costs_no_image(
        early: SimpleNamespace, monkeypatch: pytest.MonkeyPatch, child: str) -> None:
    monkeypatch.setattr(_check_process, "_BOOT", child)
    monkeypatch.setattr(_check_process, "ANSWER_TIMEOUT_S", 0.5)
    with simulate() as sim:
        outcomes = await asyncio.wait_for(_batch(16), 60)
        assert sorted(o.status for o in outcomes) == ["done"] * 16
        assert len(sim.requests("openai", stage="generate")) == 16
    assert len(early.started) == 1 and not early.started[0].ready
    assert early.started[0]._proc is None  # ended (killed when silent) with the batch
    assert early.answered == []  # not one verdict came from it


async def test_a_child_that_cannot_start_costs_no_image(
        early: SimpleNamespace, monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    monkeypatch.setattr(sys, "executable", str(tmp_path / "no-such-python"))
    with simulate():
        outcomes = await _batch(12)
    assert sorted(o.status for o in outcomes) == ["done"] * 12
    assert len(early.started) == 1 and not early.started[0].ready


class _IO:
    def __init__(self, process: CheckProcess) -> None:
        self.process = process

    def check_process(self) -> CheckProcess:
        return self.process

    def ahttp_client(self) -> Any:
        raise AssertionError("inline images need no download")


async def test_a_corrupt_image_checked_in_the_child_is_refused_as_here(
        process: CheckProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[bytes] = []
    real = process.check

    async def check(data: bytes) -> Any:
        asked.append(data)
        return await real(data)

    monkeypatch.setattr(process, "check", check)
    step = Download(images=(RawImage(data=CASES["short image data"], mime="image/png"),
                            RawImage(data=GOOD, mime="image/png")),
                    provider="openai", timeout_s=5, max_bytes=1 << 20)
    bad, good = await step.arun(_IO(process))
    assert len(asked) == 2  # both went to the child
    assert isinstance(bad, mg.errors.EmptyResult) and "corrupt PNG data" in str(bad)
    assert "ends early" in str(bad)
    assert good.sha256 and (good.width, good.height) == (256, 128)
    # over the byte cap: refused here, as before, never sent to the child
    asked.clear()
    (big,) = await Download(images=(RawImage(data=GOOD, mime="image/png"),), provider="openai",
                            timeout_s=5, max_bytes=100).arun(_IO(process))
    assert asked == [] and isinstance(big, mg.errors.ModelglassError)


def test_a_batch_asks_for_the_child_only_past_its_threshold(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_check_process, "START_AFTER", 3)
    started: list[int] = []
    monkeypatch.setattr(CheckProcess, "start", classmethod(lambda cls: started.append(1) or
                                                           CheckProcess()))
    low = BatchChecks(concurrency=_check_process.MIN_CONCURRENCY - 1)
    assert [low.process() for _ in range(10)] == [None] * 10 and started == []
    high = BatchChecks(concurrency=_check_process.MIN_CONCURRENCY)
    assert [high.process() for _ in range(3)] == [None] * 3 and started == []
    assert high.process() is None and started == [1]  # starting: inline meanwhile
    assert high.process() is None and started == [1]  # one child per batch
    monkeypatch.setenv("MODELGLASS_CHECK_PROCESS", "0")
    off = BatchChecks(concurrency=64)
    assert [off.process() for _ in range(10)] == [None] * 10 and started == [1]
    assert os.environ["MODELGLASS_CHECK_PROCESS"] == "0"
