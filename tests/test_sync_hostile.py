"""`catalog sync` against a hostile pricing server on 127.0.0.1 (issue 17, item 2).

Poisoned prices (0, 1e-300, 1e308, true, "1", a 100× jump) come from the fal Platform API
simulator; a redirect, a trickle and a huge answer from a raw-socket server. In every case nothing
is written for the poisoned offer, and the sync stays within its deadline and its byte cap.
"""

from __future__ import annotations

import socket
import socketserver
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path

import _sim_fixtures
import pytest
import yaml

from modelglass.catalog import Catalog, default_catalog_dir
from modelglass.catalog_tools._sync import sync
from modelglass.catalog_tools._sync_guard import MAX_ANSWER_BYTES
from modelglass.testing import Simulator

sim = _sim_fixtures.sim_fixture(scope="function")


@pytest.fixture
def shipped() -> Catalog:
    return Catalog.load(default_catalog_dir())


def _fal_offer(cat: Catalog, kind: str) -> str:
    """A fal offer of ``kind`` that is alone on its endpoint."""
    return next(v.key for v in cat.offers() if v.provider == "fal"
                and v.offer.price.kind.value == kind
                and len([w for w in cat.offers() if w.endpoint == v.endpoint]) == 1)


def _written(ov: Path) -> dict[str, object]:
    return (yaml.safe_load(ov.read_text()) or {}).get("offers") or {} if ov.exists() else {}


POISON = [0, 0.0, 1e-300, 1e308, True, "1", "0.03", None, [0.03], {"usd": 0.03}]


@pytest.mark.parametrize("kind", ["per_image", "per_megapixel"])
@pytest.mark.parametrize("value", POISON, ids=repr)
def test_a_poisoned_price_is_never_written(sim: Simulator, shipped: Catalog, tmp_path: Path,
                                           kind: str, value: object) -> None:
    key = _fal_offer(shipped, kind)
    view = shipped.offer(key)
    sim.platform.fal_prices[view.endpoint] = (value, "image" if kind == "per_image"  # type: ignore[assignment]
                                              else "megapixels")
    ov = tmp_path / "o.yaml"
    report = sync(overlay=ov, providers=["fal"])
    assert report.providers["fal"] == "ok"
    assert key not in _written(ov)
    found = [f for f in report.findings if f.offer == key and not f.what.startswith("schema")]
    assert found and {f.what for f in found} <= {"held", "refused", "unmapped"}, found
    # what routing and budgets see is still the catalog's own price
    after = Catalog.load(default_catalog_dir(), overlays=[ov]).offer(key)
    assert after.offer.price == view.offer.price
    est = after.estimate_cost(1024, 1024, 1)
    assert est.usd is not None and est.usd > 0 and est.max_usd is not None and est.max_usd > 0


@pytest.mark.parametrize("factor", [100.0, 0.01, 3.5])
def test_a_jump_past_the_factor_is_held_and_written_only_when_accepted(
        sim: Simulator, shipped: Catalog, tmp_path: Path, factor: float) -> None:
    key = _fal_offer(shipped, "per_image")
    view = shipped.offer(key)
    assert view.offer.price.usd is not None
    jumped = view.offer.price.usd * factor
    sim.platform.fal_prices[view.endpoint] = (jumped, "image")
    ov = tmp_path / "o.yaml"
    report = sync(overlay=ov, providers=["fal"])
    (held,) = [f for f in report.of("held") if f.offer == key]
    assert "suspicious" in held.detail and f"--accept {key}" in held.detail
    assert key not in _written(ov)
    report = sync(overlay=ov, providers=["fal"], accept=[key])
    assert key in {f.offer for f in report.of("price")}
    assert _written(ov)[key]["price"]["usd"] == pytest.approx(jumped)  # type: ignore[index]


def test_a_held_price_keeps_the_earlier_synced_one(sim: Simulator, shipped: Catalog,
                                                  tmp_path: Path) -> None:
    key = _fal_offer(shipped, "per_image")
    view = shipped.offer(key)
    assert view.offer.price.usd is not None
    fine = round(view.offer.price.usd * 1.2, 6)
    sim.platform.fal_prices[view.endpoint] = (fine, "image")
    ov = tmp_path / "o.yaml"
    sync(overlay=ov, providers=["fal"])
    assert _written(ov)[key]["price"]["usd"] == fine  # type: ignore[index]
    sim.platform.fal_prices[view.endpoint] = (0, "image")
    sync(overlay=ov, providers=["fal"], accept=[key])  # $0 is refused even when accepted
    assert _written(ov)[key]["price"]["usd"] == fine  # type: ignore[index]


def test_zero_is_plausible_only_for_an_offer_marked_free() -> None:
    from modelglass.catalog import Price
    from modelglass.catalog_tools._sync_guard import implausible, zero_refused

    free, paid = Price(kind="per_image", usd=0, free=True), Price(kind="per_image", usd=0.01)
    zero = Price(kind="per_image", usd=0)
    assert not zero_refused(free, zero) and implausible(free, zero) is None
    assert zero_refused(paid, zero)


# ------------------------------------------------------------------------------------------------
# A raw hostile server
# ------------------------------------------------------------------------------------------------
Handler = Callable[[socket.socket], None]


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False


@pytest.fixture
def hostile() -> Iterator[Callable[[Handler], str]]:
    servers: list[_Server] = []

    def start(handler: Handler) -> str:
        class H(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                head = b""
                self.request.settimeout(10)
                try:
                    while b"\r\n\r\n" not in head:
                        part = self.request.recv(4096)
                        if not part:
                            return
                        head += part
                    handler(self.request)
                except OSError:
                    pass

        srv = _Server(("127.0.0.1", 0), H)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
        return f"http://127.0.0.1:{srv.server_address[1]}/v1"

    yield start
    for srv in servers:
        srv.shutdown()
        srv.server_close()


def _env(url: str) -> dict[str, str]:
    return {"FAL_KEY": "hostile-test-key", "MODELGLASS_FAL_API_URL": url}


def _sync_fal(url: str, tmp_path: Path, timeout_s: float = 10.0) -> tuple[object, float]:
    start = time.monotonic()
    report = sync(overlay=tmp_path / "o.yaml", providers=["fal"], env=_env(url),
                  timeout_s=timeout_s)
    return report, time.monotonic() - start


def test_a_redirect_with_a_json_body_is_refused_not_read(hostile, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    body = b'{"prices": [{"endpoint_id": "fal-ai/flux/dev", "unit_price": 0, "unit": "image"}]}'

    def redirect(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:1/v1/models/pricing\r\n"
                     b"Content-Type: application/json\r\nContent-Length: "
                     + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)

    report, _ = _sync_fal(hostile(redirect), tmp_path)
    status = report.providers["fal"]  # type: ignore[attr-defined]
    assert status.startswith("error: HTTP 302 redirect") and "refused" in status
    assert not (tmp_path / "o.yaml").exists()


def test_a_trickling_server_is_cut_off_at_the_one_deadline(hostile, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    def trickle(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                     b"Connection: close\r\n\r\n")
        for ch in b'{"prices": [' + b" " * 10_000:
            conn.sendall(bytes([ch]))
            time.sleep(0.3)  # every read gets a byte well within any per-read timeout

    report, elapsed = _sync_fal(hostile(trickle), tmp_path, timeout_s=2.0)
    assert report.providers["fal"].startswith("error: the sync's 2 s deadline passed")  # type: ignore[attr-defined]
    assert elapsed < 3.5, elapsed
    assert not (tmp_path / "o.yaml").exists()


def test_a_server_that_stalls_after_its_headers_ends_at_the_deadline(hostile, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    def stall(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100\r\n\r\n{")
        time.sleep(8)

    report, elapsed = _sync_fal(hostile(stall), tmp_path, timeout_s=1.5)
    assert "deadline passed" in report.providers["fal"]  # type: ignore[attr-defined]
    assert elapsed < 3.0, elapsed


@pytest.mark.parametrize("announced", [True, False])
def test_a_huge_answer_stops_at_the_byte_cap_without_the_memory(hostile, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                               announced: bool) -> None:
    total = 400 * 1024 * 1024
    chunk = b"[" * 65536

    def huge(conn: socket.socket) -> None:
        length = f"Content-Length: {total}\r\n".encode() if announced else b""
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n" + length
                     + b"Connection: close\r\n\r\n")
        for _ in range(total // len(chunk)):
            conn.sendall(chunk)

    tracemalloc.start()
    try:
        report, elapsed = _sync_fal(hostile(huge), tmp_path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    status = report.providers["fal"]  # type: ignore[attr-defined]
    assert "byte cap" in status, status
    assert peak < 3 * MAX_ANSWER_BYTES, peak
    assert elapsed < 10
    assert not (tmp_path / "o.yaml").exists()


def test_cli_lists_held_prices_and_writes_them_only_with_accept(sim: Simulator, shipped: Catalog,
                                                                 tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from modelglass.cli import app

    key = _fal_offer(shipped, "per_image")
    view = shipped.offer(key)
    assert view.offer.price.usd is not None
    sim.platform.fal_prices[view.endpoint] = (view.offer.price.usd * 100, "image")
    ov = tmp_path / "o.yaml"
    runner = CliRunner()
    r = runner.invoke(app, ["catalog", "sync", "--provider", "fal", "--overlay", str(ov)],
                      env={"COLUMNS": "250"})
    assert r.exit_code == 0, r.output
    assert "held: suspicious" in r.output and key in r.output
    assert key not in _written(ov)
    r = runner.invoke(app, ["catalog", "sync", "--provider", "fal", "--overlay", str(ov),
                            "--accept", key, "--timeout", "30"], env={"COLUMNS": "250"})
    assert r.exit_code == 0, r.output
    assert _written(ov)[key]["price"]["usd"] == pytest.approx(view.offer.price.usd * 100)  # type: ignore[index]
