"""The image check of a large async batch in a child process (``_check_process.py``, issue 16
item 8): it verifies what the check here verifies and nothing else, the batch uses it once it has
checked enough images, and it is never a reason to lose or fail an image — a child that cannot
start, dies, or goes silent leaves every image checked inline, and a fault it finds is checked
(and worded) here."""

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
from modelglass._verify_image import verify_bytes
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


async def test_the_child_verifies_what_the_check_here_verifies_and_nothing_else(
        process: CheckProcess) -> None:
    async def there(data: bytes) -> Any:
        try:
            return await process.verify(data, mime_hint="image/png", provider="openai")
        except CheckProcessGone:
            return "check here"

    def here(data: bytes) -> Any:
        try:
            return verify_bytes(data, "image/png", provider="openai")
        except mg.errors.EmptyResult:
            return "check here"

    answers = await asyncio.gather(*(there(data) for data in CASES.values()))
    assert answers == [here(data) for data in CASES.values()]
    assert [a == "check here" for a in answers] == [False, False, True, True, True, True, True,
                                                     False]
    assert (answers[0].width, answers[0].height, answers[0].mime) == (256, 128, "image/png")
    assert answers[0].data is GOOD  # this process's bytes, not a copy from the child
    # the pixel cap goes with each question
    with pytest.raises(CheckProcessGone):
        await process.verify(GOOD, max_pixels=256 * 128 - 1)
    assert (await process.verify(GOOD, max_pixels=256 * 128)).sha256 == answers[0].sha256


async def test_a_dead_child_fails_every_wait_at_once_and_is_not_used_again(
        process: CheckProcess) -> None:
    assert (await process.verify(GOOD)).width == 256
    assert process.pid is not None
    os.kill(process.pid, signal.SIGKILL)
    with pytest.raises(CheckProcessGone):
        await asyncio.wait_for(process.verify(GOOD), 5)  # never a hang
    assert not process.ready
    with pytest.raises(CheckProcessGone):
        await process.verify(GOOD)


async def test_a_cancelled_wait_leaves_the_child_answering_the_next(
        process: CheckProcess) -> None:
    waiting = asyncio.ensure_future(process.verify(GOOD))
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert (await process.verify(CASES["small good"])).width == 4
    assert process._pending == {}


async def test_closing_ends_the_child(process: CheckProcess) -> None:
    pid, child = process.pid, process._proc
    assert pid is not None and child is not None
    assert (await process.verify(GOOD)).height == 128
    await process.aclose()
    assert child.get_returncode() == 0  # it read the end of its input and exited (not killed)
    with pytest.raises(ProcessLookupError):  # and was reaped
        os.kill(pid, 0)
    assert not process.ready and process.pid is None


# -- in a batch ---------------------------------------------------------------------------------
def _jobs(n: int) -> list[dict[str, Any]]:
    return [{"id": f"j{i}", "prompt": f"checked job {i}", "quality": "thumbnail",
             "model": "gpt-image-2", "provider": "openai", "seed": i} for i in range(n)]


@pytest.fixture
def early(monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    """Batches start their check process after 2 images at any concurrency: ``started``, the
    processes they started; ``answered``, the images those verified."""
    monkeypatch.setattr(_check_process, "START_AFTER", 2)
    monkeypatch.setattr(_check_process, "MIN_CONCURRENCY", 1)
    seen = SimpleNamespace(started=[], answered=[])
    real_start = CheckProcess.start.__func__  # type: ignore[attr-defined]
    real_verify = CheckProcess.verify

    def start(cls: type[CheckProcess]) -> CheckProcess:
        seen.started.append(real_start(cls))
        return seen.started[-1]

    async def verify(self: CheckProcess, data: bytes, **kw: Any) -> Any:
        got = await real_verify(self, data, **kw)
        seen.answered.append(got)
        return got

    monkeypatch.setattr(CheckProcess, "start", classmethod(start))
    monkeypatch.setattr(CheckProcess, "verify", verify)
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
    assert len(early.answered) >= 10
    child = early.started[0]
    assert not child.ready and child._proc is None  # ended with the batch
    by_hash = {f.sha256: f for f in early.answered}
    for o in outcomes:  # every image verified: its real size and hash, where it was checked
        image = o.result.images[0]
        assert image.width > 0 and len(image.sha256) == 64
        if image.sha256 in by_hash:
            assert (image.width, image.height) == (by_hash[image.sha256].width,
                                                   by_hash[image.sha256].height)


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


async def test_a_corrupt_image_the_child_saw_is_refused_as_here(
        process: CheckProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[bytes] = []
    real = process.verify

    async def verify(data: bytes, **kw: Any) -> Any:
        asked.append(data)
        return await real(data, **kw)

    monkeypatch.setattr(process, "verify", verify)
    step = Download(images=(RawImage(data=CASES["short image data"], mime="image/png"),
                            RawImage(data=GOOD, mime="image/png")),
                    provider="openai", timeout_s=5, max_bytes=1 << 20)
    bad, good = await step.arun(_IO(process))
    assert len(asked) == 2  # both went to the child
    assert isinstance(bad, mg.errors.EmptyResult)
    with pytest.raises(mg.errors.EmptyResult) as here:
        verify_bytes(CASES["short image data"], "image/png", provider="openai")
    assert str(bad) == str(here.value) and "ends early" in str(bad)  # worded as here
    assert good.sha256 == verify_bytes(GOOD).sha256 and (good.width, good.height) == (256, 128)
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


async def test_the_child_gets_no_credential(monkeypatch: pytest.MonkeyPatch,
                                            tmp_path: Any) -> None:
    # It reads image bytes and nothing else: the provider keys stay in this process.
    monkeypatch.setenv("OPENAI_API_KEY", "sk-not-for-the-child")
    monkeypatch.setenv("FAL_KEY", "fal-secret")
    monkeypatch.setenv("REPLICATE_API_TOKEN", "r8-secret")
    monkeypatch.setenv("MODELGLASS_MARKER", "kept")
    out = tmp_path / "env.txt"
    monkeypatch.setattr(_check_process, "_BOOT",
                        f"import os; open({str(out)!r}, 'w').write(repr(dict(os.environ)))")
    proc = CheckProcess.start()
    await proc._spawning  # type: ignore[misc]
    for _ in range(100):
        if out.exists() and out.read_text().endswith("}"):
            break
        await asyncio.sleep(0.05)
    await proc.aclose()
    env = out.read_text()
    assert "MODELGLASS_MARKER" in env and "MALLOC_MMAP_THRESHOLD_" in env
    for secret in ("sk-not-for-the-child", "fal-secret", "r8-secret"):
        assert secret not in env


async def test_closing_the_stream_mid_batch_ends_its_child(early: SimpleNamespace) -> None:
    # The caller stops reading while images are still being checked: the jobs in flight are
    # cancelled and the batch's child ends with it (no process outlives the stream).
    with simulate():
        async with mg.AsyncClient(available=["openai"], observed=False) as client:
            stream = client.agenerate_many(_jobs(40), concurrency=4, limits={})
            seen = []
            async for outcome in stream:
                seen.append(outcome)
                if len(early.answered) >= 3:
                    break
            await stream.aclose()
    assert all(o.status == "done" for o in seen) and len(seen) < 40
    assert len(early.started) == 1
    child = early.started[0]
    assert not child.ready and child._proc is None and child._pending == {}


@pytest.mark.parametrize("value, on", [("0", False), (" OFF ", False), ("False", False),
                                       ("no", False), ("1", True), ("", True), ("yes", True)])
def test_the_switch_reads_as_the_other_modelglass_switches(monkeypatch: pytest.MonkeyPatch,
                                                            value: str, on: bool) -> None:
    # MODELGLASS_CHECK_PROCESS and MODELGLASS_OBSERVE read one way (``_env.switched_off``):
    # "OFF" used to leave the check process on.
    from modelglass.catalog._observed import observing_enabled

    monkeypatch.setenv("MODELGLASS_CHECK_PROCESS", value)
    monkeypatch.setenv("MODELGLASS_OBSERVE", value)
    assert _check_process.enabled() is on
    assert observing_enabled() is on


_GARBLED = """
import struct, sys
ask, answer = struct.Struct('!IIQ'), struct.Struct('!IBI')
while len(head := sys.stdin.buffer.read(ask.size)) == ask.size:
    ident, length, _ = ask.unpack(head)
    sys.stdin.buffer.read(length)
    message = {!r}
    sys.stdout.buffer.write(answer.pack(ident, 0, len(message)) + message)
    sys.stdout.buffer.flush()
"""


@pytest.mark.parametrize("message", [
    b"nonsense",  # no description at all
    b"text/html 1 1 " + b"0" * 64,  # a type no image has
    b"image/png 1 1 abc",  # no SHA-256
])
async def test_a_child_that_answers_garbage_is_dropped_and_every_image_checked_here(
        early: SimpleNamespace, monkeypatch: pytest.MonkeyPatch, message: bytes) -> None:
    import hashlib

    monkeypatch.setattr(_check_process, "_BOOT", _GARBLED.format(message))
    with simulate() as sim:
        outcomes = await asyncio.wait_for(_batch(16), 60)
        assert sorted(o.status for o in outcomes) == ["done"] * 16
        assert len(sim.requests("openai", stage="generate")) == 16  # nothing paid twice
    assert len(early.started) == 1 and not early.started[0].ready  # given up on
    assert early.answered == []  # no verdict of its was taken
    for o in outcomes:  # each image's own size and hash, from the check here
        image = o.result.images[0]
        assert image.sha256 == hashlib.sha256(image.data).hexdigest() and image.width > 1
