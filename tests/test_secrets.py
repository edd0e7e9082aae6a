"""Secrets: a key given as an argument or an env var never shows up in any output.

Every output a user or a log collector can see is gathered — reprs, error texts, attempts, log
records at DEBUG, result metadata, saved PNG bytes and sidecars — and grepped for the keys and
for the halves of a ``key_id:secret`` fal key.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_client import PROMPT, fast_providers

import modelglass as mg
from modelglass.providers.fal import FalProvider
from modelglass.providers.openai import OpenAIProvider
from modelglass.providers.replicate import ReplicateProvider
from modelglass.testing import Simulator, simulate

ARG_KEYS = {"openai": "sk-proj-ARGKEY0penAI7f3c9e1d2b4a6", "fal": "falid-ARG51d2:falsecret-ARG9c8e7d6f5",
            "replicate": "r8_ARGKEYreplicate4e5f6a7b8c9d"}
ENV_KEYS = {"OPENAI_API_KEY": "sk-proj-ENVKEY0penAI1a2b3c4d5e6f",
            "FAL_KEY": "falid-ENV7a8b:falsecret-ENV1b2c3d4e",
            "REPLICATE_API_TOKEN": "r8_ENVKEYreplicate9a8b7c6d5e4f"}


def needles() -> list[str]:
    out: list[str] = []
    for key in [*ARG_KEYS.values(), *ENV_KEYS.values()]:
        out.append(key)
        out.extend(part for part in key.split(":") if len(part) >= 8)
    return out


def assert_clean(text: str | bytes, where: str) -> None:
    blob = text if isinstance(text, bytes) else text.encode("utf-8", "replace")
    for needle in needles():
        assert needle.encode() not in blob, f"a key leaked into {where}"


@pytest.fixture
def sim(monkeypatch: pytest.MonkeyPatch) -> Iterator[Simulator]:
    with simulate() as s:
        for name, value in ENV_KEYS.items():  # the simulators accept any key
            monkeypatch.setenv(name, value)
        yield s


def arg_client(**kw: Any) -> mg.Client:
    providers = {"fal": FalProvider(ARG_KEYS["fal"], poll_interval_s=0.01,
                                    poll_retry_backoff_s=0.01),
                 "replicate": ReplicateProvider(ARG_KEYS["replicate"], poll_interval_s=0.01),
                 "openai": OpenAIProvider(ARG_KEYS["openai"])}
    return mg.Client(providers=providers, api_keys=ARG_KEYS, retry_backoff_s=0.01, **kw)


def env_client(**kw: Any) -> mg.Client:
    return mg.Client(providers=fast_providers(), retry_backoff_s=0.01, **kw)


def outputs_of(result: mg.ImageResult, tmp: Path) -> list[tuple[str, str | bytes]]:
    out: list[tuple[str, str | bytes]] = [("repr(result)", repr(result)),
                                          ("attempts", repr(result.attempts)),
                                          ("fates", repr(result.fates)),
                                          ("plan", json.dumps(result.plan.to_dict(), default=str)),
                                          ("extra", json.dumps(result.extra, default=str))]
    for i, img in enumerate(result.images):
        out.append((f"repr(image {i})", repr(img)))
        out.append((f"metadata {i}", json.dumps(img.metadata, default=str)))
        path = img.save(tmp / f"img{i}.png")
        for f in sorted(tmp.iterdir()):  # the PNG and any sidecar
            out.append((f"saved file {f.name}", f.read_bytes()))
        assert Path(path).exists()
    return out


@pytest.mark.parametrize("make", [arg_client, env_client], ids=["api_keys=", "env vars"])
@pytest.mark.parametrize(("provider", "quality"), [("fal", "draft"), ("replicate", "draft"),
                                                   ("openai", "thumbnail")])
def test_no_key_in_results_saved_files_reprs_or_logs(
        sim: Simulator, caplog: pytest.LogCaptureFixture, tmp_path: Path, make: Any,
        provider: str, quality: str) -> None:
    caplog.set_level(logging.DEBUG)
    sim.fail(provider, status=429, times=1, retry_after=0.01)  # type: ignore[arg-type]  # a retry: logs
    with make() as client:
        result = client.generate(PROMPT, quality=quality, provider=provider, seed=1)
        seen = outputs_of(result, tmp_path)
        seen += [("repr(client)", repr(client)),
                 ("repr(provider)", repr(client.provider(provider))),
                 ("availability", repr(client.availability(provider)))]
    # the key did reach the wire (so the test is not vacuous)
    assert any(r.header("authorization") for r in sim.requests(provider))  # type: ignore[arg-type]
    seen += [(f"log {r.name}", r.getMessage()) for r in caplog.records]
    seen += [("log text", caplog.text)]
    for where, text in seen:
        assert_clean(text, where)


@pytest.mark.parametrize(("make", "keys"), [(arg_client, list(ARG_KEYS.values())),
                                            (env_client, list(ENV_KEYS.values()))],
                         ids=["api_keys=", "env vars"])
def test_no_key_in_errors_even_when_the_provider_echoes_it(
        sim: Simulator, caplog: pytest.LogCaptureFixture, make: Any, keys: list[str]) -> None:
    """The providers answer with the client's own keys in their error bodies."""
    caplog.set_level(logging.DEBUG)
    echo = {"error": {"message": f"Incorrect API key provided: {' '.join(keys)}",
                      "type": "invalid_request_error", "code": "invalid_api_key", "param": None}}
    sim.fail("openai", status=401, times=10, body=echo)
    sim.fail("fal", status=401, times=10, body={"detail": f"bad key {' '.join(keys)}"})
    sim.fail("replicate", status=500, times=10,
             body={"title": "boom", "detail": f"token {' '.join(keys)} rejected"})
    with make(max_retries=1) as client, pytest.raises(mg.AllAttemptsFailed) as info:
        client.generate(PROMPT, quality="thumbnail")
    err = info.value
    texts = [("str(error)", str(err)), ("repr(error)", repr(err)),
             ("attempts", repr(err.attempts)),
             ("attempt errors", "\n".join(a.error or "" for a in err.attempts)),
             ("error body", repr(getattr(err, "body", None)))]
    assert {a.provider for a in err.attempts} >= {"openai", "fal", "replicate"}
    texts += [(f"log {r.name}", r.getMessage()) for r in caplog.records]
    for where, text in texts:
        assert_clean(text, where)


def test_no_key_in_async_results_or_logs(sim: Simulator, caplog: pytest.LogCaptureFixture,
                                         tmp_path: Path) -> None:
    caplog.set_level(logging.DEBUG)

    async def main() -> mg.ImageResult:
        async with mg.AsyncClient(providers=fast_providers(), api_keys=ARG_KEYS) as client:
            return await client.generate(PROMPT, quality="draft", provider="fal")

    result = asyncio.run(main())
    for where, text in [*outputs_of(result, tmp_path),
                        *((f"log {r.name}", r.getMessage()) for r in caplog.records)]:
        assert_clean(text, where)
