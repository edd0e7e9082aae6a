"""The Replicate predictions API simulator (wire-format notes §3).

A prediction is created ``starting``; each ``GET`` advances it: ``starting`` (one extra poll per
scripted ``slow`` occurrence) → ``processing`` → the outcome once the service time has passed
since creation. ``Prefer: wait[=N]`` holds the create request until the prediction finishes
within the window (answering ``succeeded`` with output) or otherwise answers ``starting``; it
never answers ``processing`` with a null output, which ``replicate.run`` would take as final.
"""

from __future__ import annotations

import hashlib
import random
import re
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ._server import DROP, FileSpec, ProviderApp, RecordedRequest, Reply, _Drop
from ._sizes import ONE_MP_SIZES, ULTRA_SIZES, size_for_aspect
from ._wire import Endpoints, replicate_invalid

__all__ = ["MODELS", "VERSIONS", "ReplicateApp"]

_FLUX_FORMATS = ("webp", "jpg", "png")
_PRO_ASPECTS = ("custom", "1:1", "16:9", "3:2", "2:3", "4:5", "5:4", "9:16", "3:4", "4:3")
MODELS: dict[str, dict[str, Any]] = {
    "black-forest-labs/flux-schnell": {"steps": (1, 4), "aspects": tuple(ONE_MP_SIZES)},
    "black-forest-labs/flux-dev": {"steps": (1, 50), "aspects": tuple(ONE_MP_SIZES),
                                   "guidance": (0, 10)},
    "black-forest-labs/flux-1.1-pro": {"single": True, "aspects": _PRO_ASPECTS},
    "black-forest-labs/flux-1.1-pro-ultra": {"single": True, "aspects": tuple(ULTRA_SIZES),
                                             "formats": ("jpg", "png"), "default_fmt": "jpg",
                                             "ultra": True},
    "stability-ai/sdxl": {"sdxl": True},
}
VERSIONS: dict[str, str] = {
    "7762fd07cf82c948538e41f63f77d685e02b063e37e496e96eefd46c929f9bdc": "stability-ai/sdxl",
    "39ed52f2a78e934b3ba6e2a89f5b1c712de7dfea535525255b1aa35c5565e08b": "stability-ai/sdxl",
}
_SDXL_SCHEDULERS = ("DDIM", "DPMSolverMultistep", "HeunDiscrete", "KarrasDPM",
                    "K_EULER_ANCESTRAL", "K_EULER", "PNDM")
_TERMINAL = ("succeeded", "failed", "canceled", "aborted")
_MODEL_PATH = re.compile(r"^/v1/models/([^/]+)/([^/]+)(/predictions|/versions/([^/]+))?$")
_PRED_PATH = re.compile(r"^/v1/predictions/([^/]+)(/cancel)?$")
_NSFW = "NSFW content detected. Try running it again, or try a different prompt."


class _Invalid(Exception):
    def __init__(self, field_name: str, description: str, type_: str = "enum") -> None:
        super().__init__(description)
        self.field, self.description, self.type = field_name, description, type_


@dataclass
class _Prediction:
    id: str
    model: str
    version: str
    input: dict[str, Any]
    output: Any
    seed: int
    created: float
    created_at: str
    ready_at: float
    outcome: str = "succeeded"
    error_text: str | None = None
    status: str = "starting"
    started_at: str | None = None
    completed_at: str | None = None
    logs: str = ""


def _now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class ReplicateApp(ProviderApp):
    """Simulates ``api.replicate.com``."""

    provider = "replicate"

    def __init__(self, state: Any) -> None:
        super().__init__(state)
        self.base_url = ""  # http://127.0.0.1:PORT, set by the Simulator
        self._preds: dict[str, _Prediction] = {}
        self._versions = {**VERSIONS, **_stored_versions()}
        self.endpoints = Endpoints()  # what this Replicate serves; the Simulator shares its own
        self._lock = threading.Lock()

    def stage(self, req: RecordedRequest, role: str) -> str | None:
        if m := _MODEL_PATH.match(req.path):
            if m.group(3) == "/predictions" and req.method == "POST":
                return "create"
            if m.group(4) and req.method == "GET":
                return "version"
            return None
        if req.path == "/v1/predictions" and req.method == "POST":
            return "create"
        if req.path == "/v1/predictions" and req.method == "GET":
            return "list"
        if m := _PRED_PATH.match(req.path):
            if m.group(2) and req.method == "POST":
                return "cancel"
            return "poll" if req.method == "GET" and not m.group(2) else None
        return super().stage(req, role)

    def handle(self, req: RecordedRequest, stage: str | None, role: str) -> Reply | _Drop:
        if stage == "download":
            return self.serve_file(req)
        if not req.header("authorization", "").startswith("Bearer "):
            return self._problem(401, "You did not pass a valid authentication token",
                                 "Unauthenticated")
        if stage is None:
            return self._problem(404, "The requested resource could not be found", "Not found")
        if stage == "version":
            return self._version(req)
        if stage == "create":
            return self._create(req)
        if stage == "list":
            return self._list()
        m = _PRED_PATH.match(req.path)
        assert m is not None
        with self._lock:
            pred = self._preds.get(m.group(1))
        if pred is None:
            return self._problem(404, "The requested resource could not be found", "Not found")
        if stage == "cancel":
            with self._lock:
                if pred.status not in _TERMINAL:
                    self._finish(pred, "canceled")
            return Reply.json(200, self._json(pred))
        return self._poll(pred, req)

    def _list(self) -> Reply:
        """``GET /v1/predictions``: every prediction, newest first, one page."""
        with self._lock:
            preds = sorted(self._preds.values(), key=lambda p: p.created, reverse=True)
            results = [self._json(p) for p in preds]
        return Reply.json(200, {"next": None, "previous": None, "results": results})

    # versions -----------------------------------------------------------------------
    def _version(self, req: RecordedRequest) -> Reply:
        m = _MODEL_PATH.match(req.path)
        assert m is not None
        model, vid = f"{m.group(1)}/{m.group(2)}", m.group(4)
        with self._lock:
            self._versions.setdefault(vid, model)
        known, schema = self.endpoints.lookup("replicate", model)
        if not known:
            return self._problem(404, "The requested resource could not be found", "Not found")
        single = MODELS.get(model, {}).get("single", False)
        uri = {"type": "string", "format": "uri"}
        out = uri if single else {"type": "array", "items": uri}
        schemas: dict[str, Any] = {"Output": out}
        if schema is not None:
            schemas["Input"] = schema.input
        return Reply.json(200, {"id": vid, "created_at": "2024-01-01T00:00:00.000000Z",
                                "cog_version": "0.9.4",
                                "openapi_schema": {"components": {"schemas": schemas}}})

    # create -------------------------------------------------------------------------
    def _create(self, req: RecordedRequest) -> Reply | _Drop:
        body = req.json if isinstance(req.json, dict) else {}
        inputs = body.get("input")
        if not isinstance(inputs, dict):
            return self._problem(422, "- input: Invalid type. Expected: object",
                                 "Input validation failed")
        if m := _MODEL_PATH.match(req.path):
            model = f"{m.group(1)}/{m.group(2)}"
            version = "dp-" + hashlib.md5(model.encode()).hexdigest()
            known, schema = self.endpoints.lookup("replicate", model)
            if not known or (schema is not None and schema.version):
                # Only official models run by name; a community model needs its version.
                return self._problem(404, "The requested resource could not be found",
                                     "Not found")
        else:
            version = str(body.get("version", ""))
            if ":" in version:
                version = version.split(":", 1)[1]
            if not re.fullmatch(r"[0-9a-f]{64}", version):
                return self._problem(422, f"Invalid version or not permitted: {version!r}",
                                     "Invalid version")
            with self._lock:
                model = self._versions.get(version, "unknown/model")
            if not self.endpoints.lookup("replicate", model)[0]:
                return self._problem(422, f"Invalid version or not permitted: {version!r}",
                                     "Invalid version")
        _, bad = self.endpoints.check("replicate", model, inputs)
        if bad:
            detail, fields = replicate_invalid(bad)
            req.fault = req.fault or "invalid"
            return self._problem(422, detail, "Input validation failed", invalid_fields=fields)
        try:
            output_specs, seed = self._plan(model, inputs)
        except _Invalid as exc:
            return self._problem(422, f"- input.{exc.field}: {exc.description}",
                                 "Input validation failed",
                                 invalid_fields=[{"type": exc.type, "field": f"input.{exc.field}",
                                                  "description": exc.description}])
        urls = []
        for spec in output_specs:
            urls.append(f"{self.base_url}/files/{self.state.add_file(spec)}")
        single = MODELS.get(model, {}).get("single", False)
        now = time.monotonic()
        pred = _Prediction(id=_prediction_id(), model=model, version=version, input=inputs,
                           output=urls[0] if single else urls, seed=seed, created=now,
                           created_at=_now_iso(), ready_at=now + self.state.service_time)
        bound = self.state.faults.take("poll", ["failed", "content", "canceled",
                                                "unknown_status"])
        if bound is not None:
            req.fault = bound.kind
            pred.outcome = {"failed": "failed", "content": "failed", "canceled": "canceled",
                            "unknown_status": "aborted"}[bound.kind]
            default = _NSFW if bound.kind == "content" else \
                "Prediction failed: simulated model error (modelglass simulator)"
            pred.error_text = bound.body if isinstance(bound.body, str) else default
        with self._lock:
            self._preds[pred.id] = pred
        self.state.bill()
        headers: dict[str, str] = {}
        window = _prefer_wait(req.header("prefer"))
        if window is not None:
            headers["Preference-Applied"] = "wait"
            if not self.state.faults.pending("poll", ["slow"]) and pred.outcome != "aborted":
                remaining = pred.ready_at - time.monotonic()
                if remaining <= window:
                    if self.state.sleep(remaining):
                        return DROP
                    with self._lock:
                        if pred.status not in _TERMINAL:
                            pred.started_at = _now_iso()
                            self._finish(pred, pred.outcome)
                elif self.state.sleep(window):
                    return DROP
        return Reply.json(201, self._json(pred), headers)

    def _plan(self, model: str, inp: dict[str, Any]) -> tuple[list[FileSpec], int]:
        spec = MODELS.get(model, {"generic": True})
        prompt = inp.get("prompt")
        if not isinstance(prompt, str) or not prompt:
            raise _Invalid("prompt", "prompt is required", "required")
        seed = inp.get("seed")
        if seed is None:
            seed = random.randrange(0, 2**31)
        elif not isinstance(seed, int) or isinstance(seed, bool):
            raise _Invalid("seed", "Invalid type. Expected: integer, given: string", "type")
        n = inp.get("num_outputs", 1)
        if spec.get("single"):
            n = 1
        elif not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= 4:
            raise _Invalid("num_outputs", "Must be between 1 and 4", "number_one_of")
        if spec.get("sdxl"):
            width, height, fmt = self._sdxl(inp)
        else:
            width, height = self._flux_size(spec, inp)
            fmt = inp.get("output_format", spec.get("default_fmt", "webp"))
            formats = spec.get("formats", _FLUX_FORMATS)
            if fmt not in formats:
                raise _Invalid("output_format", "output_format must be one of the following: "
                               + ", ".join(f'"{f}"' for f in formats))
        if "steps" in spec and "num_inference_steps" in inp:
            lo, hi = spec["steps"]
            steps = inp["num_inference_steps"]
            if not isinstance(steps, int) or not lo <= steps <= hi:
                raise _Invalid("num_inference_steps", f"Must be between {lo} and {hi}",
                               "number_one_of")
        if "guidance" in spec and "guidance" in inp:
            lo, hi = spec["guidance"]
            g = inp["guidance"]
            if not isinstance(g, (int, float)) or not lo <= g <= hi:
                raise _Invalid("guidance", f"Must be between {lo} and {hi}", "number_one_of")
        fmt = "jpeg" if fmt == "jpg" else fmt
        return [FileSpec(prompt, seed + i, width, height, fmt, model=model)
                for i in range(n)], seed

    @staticmethod
    def _flux_size(spec: dict[str, Any], inp: dict[str, Any]) -> tuple[int, int]:
        if spec.get("generic"):
            if isinstance(inp.get("width"), int) and isinstance(inp.get("height"), int):
                return inp["width"], inp["height"]
            dims = size_for_aspect(str(inp.get("aspect_ratio", "1:1")))
            if dims is None:
                raise _Invalid("aspect_ratio", "aspect_ratio must look like W:H")
            return dims
        ratio = inp.get("aspect_ratio", "1:1")
        if ratio not in spec["aspects"]:
            raise _Invalid("aspect_ratio", "aspect_ratio must be one of the following: "
                           + ", ".join(f'"{a}"' for a in spec["aspects"]))
        if spec.get("ultra"):
            return ULTRA_SIZES[ratio]
        if ratio == "custom":
            sides: list[int] = []
            for name in ("width", "height"):
                v = inp.get(name)
                if not isinstance(v, int) or not 256 <= v <= 1440:
                    raise _Invalid(name, f"{name} must be an integer between 256 and 1440 "
                                   "when aspect_ratio is custom", "number_one_of")
                sides.append(round(v / 32) * 32)
            return sides[0], sides[1]
        w, h = ONE_MP_SIZES[ratio]
        if str(inp.get("megapixels", "1")) == "0.25":
            w, h = round(w / 32) * 16, round(h / 32) * 16
        return w, h

    @staticmethod
    def _sdxl(inp: dict[str, Any]) -> tuple[int, int, str]:
        dims = []
        for name in ("width", "height"):
            v = inp.get(name, 1024)
            if not isinstance(v, int) or isinstance(v, bool) or not 64 <= v <= 4096:
                raise _Invalid(name, f"{name} must be an integer", "type")
            dims.append(v)
        sched = inp.get("scheduler", "K_EULER")
        if sched not in _SDXL_SCHEDULERS:
            raise _Invalid("scheduler", "scheduler must be one of the following: "
                           + ", ".join(f'"{s}"' for s in _SDXL_SCHEDULERS))
        g = inp.get("guidance_scale", 7.5)
        if not isinstance(g, (int, float)) or not 1 <= g <= 50:
            raise _Invalid("guidance_scale", "Must be between 1 and 50", "number_one_of")
        steps = inp.get("num_inference_steps", 50)
        if not isinstance(steps, int) or not 1 <= steps <= 500:
            raise _Invalid("num_inference_steps", "Must be between 1 and 500", "number_one_of")
        return dims[0], dims[1], "png"

    # lifecycle ----------------------------------------------------------------------
    def _poll(self, pred: _Prediction, req: RecordedRequest) -> Reply:
        now = time.monotonic()
        with self._lock:
            if pred.status == "starting":
                if pred.outcome == "aborted":
                    self._finish(pred, "aborted")
                    return Reply.json(200, self._json(pred))
                slow = self.state.faults.take("poll", ["slow"])
                if slow is not None:
                    req.fault = "slow"
                    pred.ready_at = max(pred.ready_at, now + self.state.service_time)
                    return Reply.json(200, self._json(pred))
                pred.status = "processing"
                pred.started_at = _now_iso()
                pred.logs = f"Using seed: {pred.seed}\n"
            elif pred.status == "processing" and now >= pred.ready_at:
                self._finish(pred, pred.outcome)
            return Reply.json(200, self._json(pred))

    def _finish(self, pred: _Prediction, outcome: str) -> None:
        pred.status = outcome
        pred.completed_at = _now_iso()
        if not pred.logs:
            pred.logs = f"Using seed: {pred.seed}\n"
        if outcome == "succeeded":
            pred.logs += "100%|██████████| 4/4 [00:00<00:00, 9.99it/s]\n"

    def _json(self, pred: _Prediction) -> dict[str, Any]:
        url = f"{self.base_url}/v1/predictions/{pred.id}"
        done = pred.status in _TERMINAL
        body: dict[str, Any] = {
            "id": pred.id, "model": pred.model, "version": pred.version, "input": pred.input,
            "logs": pred.logs, "output": pred.output if pred.status == "succeeded" else None,
            "data_removed": False, "error": pred.error_text if pred.status == "failed" else None,
            "status": pred.status, "created_at": pred.created_at,
            "urls": {"get": url, "cancel": url + "/cancel",
                     "stream": f"{self.base_url}/v1/streams/{pred.id}",
                     "web": f"{self.base_url}/p/{pred.id}"},
        }
        if pred.started_at:
            body["started_at"] = pred.started_at
        if done:
            body["completed_at"] = pred.completed_at
            elapsed = round(self.state.service_time, 4)
            scripted = getattr(getattr(self, "platform", None), "replicate_predict_time", {})
            predict = scripted.get(pred.model, elapsed)
            body["metrics"] = {"predict_time": predict, "total_time": max(predict, elapsed)}
        return body

    # errors -------------------------------------------------------------------------
    def _problem(self, status: int, detail: str, title: str | None = None,
                 **extra: Any) -> Reply:
        body: dict[str, Any] = {"detail": detail, "status": status}
        if title:
            body = {"title": title, **body}
        body.update(extra)
        return Reply.json(status, body, content_type="application/problem+json")

    def error_reply(self, status: int, stage: str | None, message: str | None = None,
                    retry_after: float | None = None) -> Reply:
        if stage == "download":
            return Reply(status, b"Not Found" if status == 404 else b"Error",
                         {"Content-Type": "text/plain"})
        if status == 429:
            wait = int(retry_after) if retry_after is not None else None
            detail = message or ("Request was throttled. Your rate limit for creating "
                                 "predictions is reduced to 6 requests per minute with a burst "
                                 "of 1 requests while you have less than $5.0 in credit."
                                 + (f" Your rate limit resets in ~{wait}s." if wait else ""))
            extra = {"retry_after": wait} if wait is not None else {}
            return self._problem(429, detail, None, **extra)
        titles = {401: "Unauthenticated", 404: "Not found", 422: "Unprocessable Entity",
                  500: "Internal Server Error", 503: "Service Unavailable"}
        return self._problem(status, message or f"Simulated error {status}",
                             titles.get(status, "Error"))

    def wrong_shape(self, stage: str | None) -> Any:
        if stage == "version":
            return {"openapi_schema": None}
        return {"status": "succeeded", "output": None}


def _stored_versions() -> dict[str, str]:
    """Version id → model, for the community models whose schema pins a version."""
    import json

    from ..catalog._wire_schema import schemas_dir

    out: dict[str, str] = {}
    for path in sorted((schemas_dir() / "replicate").rglob("*.json")):
        doc = json.loads(path.read_text(encoding="utf-8"))
        if doc.get("version"):
            out[str(doc["version"])] = str(doc["endpoint"])
    return out


def _prediction_id() -> str:
    alphabet = "0123456789abcdefghjkmnpqrstvwxyz"
    return "".join(secrets.choice(alphabet) for _ in range(26))


def _prefer_wait(value: str | None) -> float | None:
    if not value:
        return None
    for part in value.split(","):
        part = part.strip()
        if part == "wait":
            return 60.0
        if part.startswith("wait="):
            try:
                return max(1.0, min(60.0, float(part[5:])))
            except ValueError:
                return 60.0
    return None
