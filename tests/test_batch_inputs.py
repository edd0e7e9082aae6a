"""What a batch is given is checked before anything is sent: per-provider limits (Python and
--limits), a Ray address that nothing answers, and result-cache entries that were tampered with
(checked against the cache's own index, not the sidecar next to the bytes)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

import modelglass as mg
from modelglass.cli import app
from modelglass.errors import InvalidRequest, ProviderUnavailable
from modelglass.jobs._schedule import ProviderLimit, validate_limits
from modelglass.testing import simulate


def _reqs(n: int) -> list[dict[str, object]]:
    return [{"id": f"l{i}", "prompt": f"a clay fox number {i}", "quality": "draft",
             "model": "flux-schnell", "provider": "fal", "seed": i} for i in range(n)]


def test_limits_given_as_plain_dicts_work():
    with simulate() as sim:
        report = mg.Client(available=["fal"]).generate_many(
            _reqs(4), limits={"fal": {"in_flight": 2, "per_minute": 600}})
        assert report.counts() == {"done": 4} and sim.billed("fal") == 4


@pytest.mark.parametrize("spec, field", [
    ({"in_flight": 0}, "limits.fal"), ({"in_flight": -1}, "limits.fal"),
    ({"in_flight": 1.5}, "limits.fal"), ({"in_flight": True}, "limits.fal"),
    ({"per_minute": 0}, "limits.fal"), ({"per_minute": -5}, "limits.fal"),
    ({"per_minute": "fast"}, "limits.fal"), ({"per_minute": float("nan")}, "limits.fal"),
    ({"burst": 3}, "limits.fal"), (7, "limits.fal")])
def test_bad_limits_are_refused_in_python_naming_provider_and_key(spec, field):
    with pytest.raises(InvalidRequest) as info:
        mg.Client(available=["fal"]).generate_many(_reqs(1), limits={"fal": spec})
    assert info.value.field == field and "fal" in str(info.value)
    with pytest.raises(InvalidRequest):
        ProviderLimit(**spec) if isinstance(spec, dict) and "burst" not in spec \
            else validate_limits({"fal": spec})


def test_a_zero_limit_in_the_limits_file_exits_2_before_anything_is_sent(tmp_path):
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text("\n".join(json.dumps(r) for r in _reqs(2)) + "\n")
    for text, word in (("fal: {in_flight: 0}\n", "in_flight"),
                       ("fal: {per_minute: 0}\n", "per_minute"), ("fal: [1\n", "YAML")):
        limits = tmp_path / "limits.yaml"
        limits.write_text(text)
        with simulate() as sim:
            r = CliRunner().invoke(app, ["batch", str(jobs), "--out", str(tmp_path / "out"),
                                         "--limits", str(limits), "--json",
                                         "--assume-available", "fal"])
            assert r.exit_code == 2, r.output
            error = json.loads(r.stdout)["error"]
            assert error["type"] == "InvalidRequest" and word in error["message"]
            assert sim.requests("fal") == []


def test_a_ray_address_nothing_answers_is_a_typed_error_not_a_hang(tmp_path):
    from modelglass.jobs._batch import Batch
    from modelglass.jobs._journal import Journal
    from modelglass.jobs._ray import run_ray

    batch = Batch(mg.Client(available=["fal"]), _reqs(1), journal=tmp_path / "run.db",
                  limits={})
    t0 = time.monotonic()
    with pytest.raises(ProviderUnavailable) as info:
        run_ray(batch, address="127.0.0.1:1")
    assert time.monotonic() - t0 < 15
    assert "127.0.0.1:1" in str(info.value) and "ray start" in str(info.value)
    with Journal(tmp_path / "run.db"):  # the failed run gave the journal back
        pass
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text(json.dumps(_reqs(1)[0]) + "\n")
    r = CliRunner().invoke(app, ["batch", str(jobs), "--out", str(tmp_path / "out"), "--engine",
                                 "ray", "--address", "127.0.0.1:1", "--json",
                                 "--assume-available", "fal"])
    err = json.loads(r.stdout)["error"]
    assert r.exit_code == 2 and err["type"] == "ProviderUnavailable"
    assert "ray start" in err["hint"] or "--simulate" not in (err.get("hint") or "")  # not a key
    r = CliRunner().invoke(app, ["batch", str(jobs), "--out", str(tmp_path / "out"), "--engine",
                                 "ray", "--address", "no-port-here", "--json",
                                 "--assume-available", "fal"])
    assert r.exit_code == 2 and json.loads(r.stdout)["error"]["field"] == "address"


def test_a_cache_entry_whose_bytes_and_sidecar_were_both_changed_is_a_miss(tmp_path):
    """Whoever rewrites an entry's bytes can rewrite the meta.json beside them; the sha256 a
    hit must match lives in the cache's own index."""
    import hashlib

    from PIL import Image

    cache = tmp_path / "cache"
    with simulate() as sim:
        client = mg.Client(available=["fal"])
        first = client.generate_many(_reqs(1), cache=cache, limits={})
        assert first.counts() == {"done": 1}
        assert client.generate_many(_reqs(1), cache=cache, limits={}).counts() == {"cached": 1}
        stored = next(cache.rglob("0.img"))
        other = tmp_path / "other.png"
        Image.new("RGB", (64, 64), "red").save(other)
        forged = other.read_bytes()
        stored.write_bytes(forged)
        meta_path = stored.parent / "meta.json"
        meta = json.loads(meta_path.read_text())
        meta["images"][0]["sha256"] = hashlib.sha256(forged).hexdigest()
        meta_path.write_text(json.dumps(meta))
        again = client.generate_many(_reqs(1), cache=cache, limits={})
        assert again.counts() == {"done": 1}          # a miss: generated again, not served
        assert again[0].result.images[0].sha256 == first[0].result.images[0].sha256
        assert len(sim.requests("fal", stage="submit")) == 2
    assert Path(cache / "index.db").is_file()
