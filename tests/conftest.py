"""Test-wide guards: no real network, no Hugging Face Hub, deterministic CPU threads."""

from __future__ import annotations

import ipaddress
import os
import socket
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
# observed-store: never the user's real cache dir, and off unless a test turns it on (recorded
# latencies would otherwise make routing depend on test order).
os.environ["MODELGLASS_OBSERVED_DB"] = os.path.join(
    __import__("tempfile").mkdtemp(prefix="modelglass-observed-"), "observed.sqlite")
os.environ["MODELGLASS_OBSERVE"] = "0"
# The clock: lifecycles and price staleness are judged on this date, never the wall date.
# MODELGLASS_TEST_TODAY moves it (CI runs the suite a year ahead too); the default is fixed.
os.environ["MODELGLASS_TODAY"] = os.environ.get("MODELGLASS_TEST_TODAY", "2026-12-06")
# The developer's own catalog overlay (~/.config/modelglass/overlay.yaml) never reaches a test.
os.environ["MODELGLASS_CATALOG_OVERLAY"] = ""
os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")
# Keys from the developer's shell must never reach a test (or a real provider).
for _key in ("OPENAI_API_KEY", "FAL_KEY", "FAL_KEY_ID", "FAL_KEY_SECRET", "REPLICATE_API_TOKEN",
             "OPENAI_BASE_URL", "REPLICATE_BASE_URL", "FAL_RUN_HOST", "FAL_QUEUE_RUN_HOST"):
    os.environ.pop(_key, None)

sys.path.insert(0, str(Path(__file__).parent))  # tests/_catalogs.py and friends

_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _allowed(address: object) -> bool:
    if not isinstance(address, tuple):  # AF_UNIX paths
        return True
    host = str(address[0])
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


def _guarded_connect(self: socket.socket, address: object) -> None:
    if not _allowed(address):
        raise ConnectionRefusedError(f"tests may not reach the network (tried {address!r})")
    return _real_connect(self, address)  # type: ignore[arg-type]


def _guarded_connect_ex(self: socket.socket, address: object) -> int:
    if not _allowed(address):
        raise ConnectionRefusedError(f"tests may not reach the network (tried {address!r})")
    return _real_connect_ex(self, address)  # type: ignore[arg-type]


socket.socket.connect = _guarded_connect  # type: ignore[method-assign]
socket.socket.connect_ex = _guarded_connect_ex  # type: ignore[method-assign]


import pytest


@pytest.fixture(autouse=True)
def _fresh_provider_health() -> None:
    """Each test starts with no provider cooling down (the health board is process-wide)."""
    from modelglass.routing import HealthBoard

    HealthBoard.shared().reset()
