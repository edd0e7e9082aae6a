"""No signed-URL token at rest or in logs: image URLs that carry a signed query (S3's
X-Amz-Signature) are written without it in the manifest, the journal, errors, provenance and
log lines (httpx's own INFO line for our downloads included)."""

from __future__ import annotations

import json
import logging
import sqlite3
from pathlib import Path

from typer.testing import CliRunner

import modelglass as mg
from modelglass.cli import app
from modelglass.testing import simulate

MARKER = "X-Amz-Signature"


def _reqs(n: int) -> list[dict[str, object]]:
    providers = ["fal", "replicate"]
    return [{"id": f"t{i}", "prompt": f"a glass whale number {i}", "quality": "draft",
             "model": "flux-schnell", "provider": providers[i % 2], "seed": i}
            for i in range(n)]


def _everything_written(folder: Path) -> str:
    """Every byte under ``folder`` (images, manifest, journal, WAL), as text."""
    return "\n".join(p.read_bytes().decode("latin-1") for p in sorted(folder.rglob("*"))
                     if p.is_file())


def test_no_signed_query_in_manifest_journal_provenance_errors_or_logs(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    out = tmp_path / "out"
    with simulate() as sim:
        sim.sign_urls()
        sim.fail("replicate", status=403, at="download", times=20)  # an expired signed URL
        client = mg.Client(available=["fal", "replicate"], max_retries=0,
                           allow_double_payment=False)
        report = client.generate_many(_reqs(6), journal=tmp_path / "run.db", out=out,
                                      limits={}, concurrency=2)
        downloads = sim.requests("fal", stage="download")
        assert downloads and all(MARKER in r.query for r in downloads), "URLs not signed"
    statuses = {o.id: o.status for o in report}
    assert [statuses[f"t{i}"] for i in (0, 2, 4)] == ["done"] * 3
    failed = [o for o in report if o.status != "done"]
    assert failed and all(o.error is not None for o in failed)
    assert all(MARKER not in str(o.error) and MARKER not in repr(o.error.__dict__)
               for o in failed)
    manifest = [o.manifest() for o in report]
    assert MARKER not in json.dumps(manifest, default=str)
    for o in report:
        if o.result is not None:
            for img in o.result.images:
                assert MARKER not in json.dumps(img.metadata, default=str)
            assert MARKER not in json.dumps([a.to_dict() for a in o.result.attempts],
                                            default=str)
    with sqlite3.connect(tmp_path / "run.db") as db:
        dump = "\n".join(db.iterdump())
    assert MARKER not in dump
    assert MARKER not in _everything_written(tmp_path)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "HTTP Request: GET" in logged  # httpx logged our downloads …
    assert MARKER not in logged           # … without their signed query


def test_the_cli_writes_and_prints_no_signed_query(tmp_path):
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text("\n".join(json.dumps(r) for r in _reqs(4)) + "\n")
    with simulate() as sim:
        sim.sign_urls()
        sim.fail("fal", status=403, at="download", times=20)
        result = CliRunner().invoke(app, ["batch", str(jobs), "--out", str(tmp_path / "out"),
                                          "--journal", str(tmp_path / "run.db"),
                                          "--assume-available", "fal,replicate"])
    assert result.exit_code == 1, result.output
    assert MARKER not in result.output
    assert MARKER not in _everything_written(tmp_path)
