"""The fal.ai simulator: the queue protocol and the sync run host (wire-format notes §2).

Two TLS listeners share one :class:`FalApp`: the *queue* host (submit, status, result, cancel)
and the *run* host (sync ``POST``). Both serve ``/files/{name}``; image URLs point at the queue
host over https.

Lifecycle of a queued request, one step per status poll: ``IN_QUEUE`` (plus one extra poll per
scripted ``slow`` occurrence, with a decreasing ``queue_position``) → ``IN_PROGRESS`` (with a
``logs`` key) → ``COMPLETED`` once the service time has passed since submit.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ._server import DROP, FileSpec, ProviderApp, RecordedRequest, Reply, _Drop, new_request_id
from ._sizes import FAL_PRESETS, ULTRA_SIZES, size_for_aspect
from ._wire import Endpoints, fal_detail

__all__ = ["ENDPOINTS", "FalApp"]

_STEP_1_50 = (1, 50)
# endpoint id -> what its schema accepts (wire-format notes §2.7)
ENDPOINTS: dict[str, dict[str, Any]] = {
    "fal-ai/flux/schnell": {"size": "landscape_4_3", "steps": (1, 12), "max_images": 4},
    "fal-ai/flux-1/schnell": {"size": "landscape_4_3", "steps": (1, 12), "max_images": 4},
    "fal-ai/flux/dev": {"size": "landscape_4_3", "steps": _STEP_1_50, "max_images": 4},
    "fal-ai/flux-1/dev": {"size": "landscape_4_3", "steps": _STEP_1_50, "max_images": 4},
    "fal-ai/flux-pro/v1.1": {"size": "landscape_4_3", "steps": None, "max_images": 4},
    "fal-ai/flux-pro/v1.1-ultra": {"aspect": "16:9", "steps": None, "max_images": 4},
    "fal-ai/fast-sdxl": {"size": "square_hd", "steps": _STEP_1_50, "max_images": 8,
                         "format_key": "format"},
    "fal-ai/stable-diffusion-v35-large": {"size": "landscape_4_3", "steps": _STEP_1_50,
                                          "max_images": 4},
}
_GENERIC: dict[str, Any] = {"size": "square_hd", "steps": None, "max_images": 8, "generic": True}
_NAMESPACES = ("workflows", "comfy")


class _Invalid(Exception):
    def __init__(self, field_name: str, msg: str, type_: str, ctx: dict[str, Any] | None = None):
        super().__init__(msg)
        self.field, self.msg, self.type, self.ctx = field_name, msg, type_, ctx


@dataclass
class _Job:
    id: str
    endpoint: str
    base: str  # {namespace/}{owner}/{app}
    output: dict[str, Any]
    created: float
    ready_at: float
    phase: str = "queued"  # queued | progress | done
    queue_shown: bool = False
    progress_shown: bool = False
    error: tuple[int, Any, str, str] | None = None  # status, body, error, error_type
    logs: list[dict[str, Any]] = field(default_factory=list)


class FalApp(ProviderApp):
    """Simulates ``queue.fal.run`` and ``fal.run``."""

    provider = "fal"

    def __init__(self, state: Any) -> None:
        super().__init__(state)
        self.queue_base = ""  # https://127.0.0.1:PORT, set by the Simulator
        self.endpoints = Endpoints()  # what this fal serves; the Simulator shares its own
        self._jobs: dict[str, _Job] = {}
        self._lock = threading.Lock()

    # routing ------------------------------------------------------------------------
    @staticmethod
    def _split(path: str) -> tuple[str, str | None, list[str]]:
        parts = [p for p in path.strip("/").split("/") if p]
        start = 3 if parts and parts[0] in _NAMESPACES else 2
        if len(parts) > start + 1 and parts[start] == "requests":
            return "/".join(parts[:start]), parts[start + 1], parts[start + 2:]
        return "/".join(parts), None, []

    def stage(self, req: RecordedRequest, role: str) -> str | None:
        if req.path.startswith("/files/"):
            return super().stage(req, role)
        if role == "run":
            return "run" if req.method == "POST" else None
        _, rid, rest = self._split(req.path)
        if rid is None:
            return "submit" if req.method == "POST" else None
        if req.method == "GET" and rest == ["status"]:
            return "status"
        if req.method == "GET" and not rest:
            return "result"
        if req.method == "PUT" and rest == ["cancel"]:
            return "cancel"
        return None

    def handle(self, req: RecordedRequest, stage: str | None, role: str) -> Reply | _Drop:
        if stage == "download":
            return self.serve_file(req)
        if stage is None:
            return self._detail(404, f"Path {req.path} not found")
        if not req.header("authorization", "").startswith(("Key ", "Bearer ")):
            return self._detail(401, "No authentication credentials provided")
        if stage in ("submit", "run"):
            return self._submit_or_run(req, stage)
        base, rid, _ = self._split(req.path)
        with self._lock:
            job = self._jobs.get(rid or "")
        if job is None or job.base != base:
            if stage == "cancel":
                return Reply.json(404, {"status": "NOT_FOUND"}, self._headers(rid))
            return self._detail(404, f"Request {rid} not found")
        if stage == "status":
            return self._status(job, req)
        if stage == "result":
            return self._result(job)
        return self._cancel(job)

    # submit / run -------------------------------------------------------------------
    def _submit_or_run(self, req: RecordedRequest, stage: str) -> Reply | _Drop:
        endpoint = req.path.strip("/")
        known, bad = self.endpoints.check("fal", endpoint, req.json)
        if not known:
            return self._detail(404, f"Application '{endpoint}' not found")
        if not isinstance(req.json, dict):
            return self._detail(422, [_err(["body"], "Input should be a valid dictionary",
                                           "dict_type")])
        invalid: list[dict[str, Any]] = fal_detail(bad)
        output: dict[str, Any] = {}
        if not invalid:
            try:
                output = self._output(endpoint, req.json)
            except _Invalid as exc:
                item = _err(["body", exc.field], exc.msg, exc.type)
                if exc.ctx:
                    item["ctx"] = exc.ctx
                invalid = [item]
        if invalid:
            # fal validates when the runner takes the job: a queued submit is accepted, and its
            # result answers 422 with FastAPI's detail[]; a sync run answers 422 at once.
            req.fault = req.fault or "invalid"
            if stage == "run":
                return self._detail(422, invalid)
            return self._enqueue(req, endpoint, {}, invalid=invalid)
        content = self.state.faults.take(stage, ["content"])
        if content is not None:
            req.fault = "content"
            return Reply.json(422, content.body or _content_body(), self._headers(None))
        if stage == "run":
            failed = self.state.faults.take("run", ["failed"])
            if self.state.sleep(self.state.service_time):
                return DROP
            if failed is not None:
                req.fault = "failed"
                status, body, _, _ = _failure(failed.status or 500, failed.body)
                return Reply.json(status, body, self._headers(new_request_id()))
            self.state.bill()
            return Reply.json(200, output, self._headers(new_request_id()))
        return self._enqueue(req, endpoint, output)

    def _enqueue(self, req: RecordedRequest, endpoint: str, output: dict[str, Any], *,
                 invalid: list[dict[str, Any]] | None = None) -> Reply:
        rid = new_request_id()
        base, _, _ = self._split(endpoint)
        parts = base.split("/")
        base = "/".join(parts[:3] if parts[0] in _NAMESPACES else parts[:2])
        now = time.monotonic()
        job = _Job(id=rid, endpoint=endpoint, base=base, output=output, created=now,
                   ready_at=now + self.state.service_time)
        bound = None if invalid else self.state.faults.take("result", ["failed", "content"])
        if invalid:
            job.error = (422, {"detail": invalid}, "Validation error", "validation_error")
        elif bound is not None:
            req.fault = bound.kind
            if bound.kind == "content":
                job.error = (422, bound.body or _content_body(), "content policy violation",
                             "content_policy_violation")
            else:
                job.error = _failure(bound.status or 500, bound.body)
        with self._lock:
            self._jobs[rid] = job
        if not invalid:  # a request its endpoint refuses is not billed
            self.state.bill()
        return Reply.json(200, {"status": "IN_QUEUE", **self._urls(job), "queue_position": 0},
                          self._headers(rid))

    def _urls(self, job: _Job) -> dict[str, str]:
        url = f"{self.queue_base}/{job.base}/requests/{job.id}"
        return {"request_id": job.id, "response_url": url, "status_url": url + "/status",
                "cancel_url": url + "/cancel"}

    # status / result / cancel -------------------------------------------------------
    def _status(self, job: _Job, req: RecordedRequest) -> Reply:
        with_logs = req.query.get("logs", "0").lower() in ("1", "true")
        odd = self.state.faults.take("status", ["unknown_status"])
        if odd is not None:
            req.fault = "unknown_status"
            return Reply.json(200, odd.body or {"status": "FAILED", **self._urls(job)},
                              self._headers(job.id))
        now = time.monotonic()
        with self._lock:
            if job.phase == "queued":
                slow = self.state.faults.take("status", ["slow"])
                if slow is not None:
                    req.fault = "slow"
                    job.ready_at = max(job.ready_at, now + self.state.service_time)
                    return self._queued(job, slow.remaining + 1)
                if not job.queue_shown:
                    job.queue_shown = True
                    return self._queued(job, 0)
                job.phase = "progress"
                job.logs.append(_log("Starting generation (simulated)"))
            elif job.phase == "progress" and job.progress_shown and now >= job.ready_at:
                job.phase = "done"
                job.logs.append(_log("Generation finished (simulated)"))
            if job.phase == "progress":
                job.progress_shown = True
                body: dict[str, Any] = {"status": "IN_PROGRESS", **self._urls(job),
                        "logs": list(job.logs) if with_logs else None}
                return Reply.json(202, body, self._headers(job.id))
        body = {"status": "COMPLETED", **self._urls(job),
                "logs": list(job.logs) if with_logs else None,
                "metrics": {"inference_time": round(self.state.service_time, 4)}}
        if job.error is not None:
            body["error"], body["error_type"] = job.error[2], job.error[3]
        return Reply.json(200, body, self._headers(job.id))

    def _queued(self, job: _Job, position: int) -> Reply:
        return Reply.json(202, {"status": "IN_QUEUE", **self._urls(job),
                                "queue_position": position}, self._headers(job.id))

    def _result(self, job: _Job) -> Reply:
        with self._lock:
            if job.phase != "done":
                if job.phase == "progress" and time.monotonic() >= job.ready_at:
                    job.phase = "done"
                else:
                    return self._detail(400, "Request is still in progress", job.id)
        if job.error is not None:
            return Reply.json(job.error[0], job.error[1], self._headers(job.id,
                                                                          job.error[3]))
        return Reply.json(200, job.output, self._headers(job.id))

    def _cancel(self, job: _Job) -> Reply:
        with self._lock:
            if job.phase == "done":
                return Reply.json(400, {"status": "ALREADY_COMPLETED"}, self._headers(job.id))
            job.phase = "done"
            # What fal answers for a cancelled request's result is not documented: a guess.
            job.error = (400, {"detail": "Request was cancelled", "error_type":
                               "request_cancelled"}, "Request was cancelled", "request_cancelled")
        return Reply.json(202, {"status": "CANCELLATION_REQUESTED"}, self._headers(job.id))

    # model output -------------------------------------------------------------------
    def _output(self, endpoint: str, args: dict[str, Any]) -> dict[str, Any]:
        spec = ENDPOINTS.get(endpoint, _GENERIC)
        prompt = args.get("prompt")
        if not isinstance(prompt, str) or not prompt:
            raise _Invalid("prompt", "Field required", "missing")
        width, height = self._size(spec, args)
        n = args.get("num_images", 1)
        max_n = spec["max_images"]
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise _Invalid("num_images", "Input should be greater than or equal to 1",
                           "greater_than_equal", {"ge": 1})
        if n > max_n:
            raise _Invalid("num_images", f"Input should be less than or equal to {max_n}",
                           "less_than_equal", {"le": max_n})
        steps = args.get("num_inference_steps")
        if steps is not None and spec["steps"] is not None:
            lo, hi = spec["steps"]
            if not isinstance(steps, int) or not lo <= steps <= hi:
                raise _Invalid("num_inference_steps",
                               f"ensure this value is between {lo} and {hi}",
                               "less_than_equal", {"ge": lo, "le": hi})
        key = spec.get("format_key", "output_format")
        if spec.get("generic") and key not in args and "format" in args:
            key = "format"
        fmt = args.get(key, "jpeg")
        if fmt not in ("jpeg", "png", "webp"):
            raise _Invalid(key, "Input should be 'jpeg', 'png' or 'webp'", "literal_error",
                           {"expected": "'jpeg', 'png' or 'webp'"})
        seed = args.get("seed")
        if seed is None:
            seed = random.randrange(0, 2**31)
        elif not isinstance(seed, int) or isinstance(seed, bool):
            raise _Invalid("seed", "Input should be a valid integer", "int_type")
        images = []
        for i in range(n):
            name = self.state.add_file(FileSpec(prompt, seed + i, width, height, fmt,
                                                  model=endpoint))
            images.append({"url": f"{self.queue_base}/files/{name}", "width": width,
                           "height": height, "content_type": f"image/{fmt}",
                           "file_name": name.split("?")[0]})
        return {"images": images, "timings": {"inference": round(self.state.service_time, 4)},
                "seed": seed, "has_nsfw_concepts": [False] * n, "prompt": prompt}

    @staticmethod
    def _size(spec: dict[str, Any], args: dict[str, Any]) -> tuple[int, int]:
        if "aspect" in spec:  # flux-pro ultra: aspect_ratio only, about 4 MP
            ratio = args.get("aspect_ratio", spec["aspect"])
            if ratio not in ULTRA_SIZES or ratio in ("5:4", "4:5"):
                raise _Invalid("aspect_ratio", "Input should be '21:9', '16:9', '4:3', '3:2', "
                               "'1:1', '2:3', '3:4', '9:16' or '9:21'", "literal_error")
            return ULTRA_SIZES[ratio]
        size = args.get("image_size")
        if size is None and spec.get("generic"):
            if isinstance(args.get("width"), int) and isinstance(args.get("height"), int):
                size = {"width": args["width"], "height": args["height"]}
            elif isinstance(args.get("aspect_ratio"), str):
                ratio = args["aspect_ratio"]
                dims = size_for_aspect("1:1" if ratio == "auto" else ratio)
                if dims is None:
                    raise _Invalid("aspect_ratio", "Invalid aspect ratio", "value_error")
                return dims
        if size is None:
            size = spec["size"]
        if isinstance(size, str) and size.startswith("auto"):
            return FAL_PRESETS["square_hd"]  # "auto", "auto_2K": the model picks; 1024² here
        if isinstance(size, str) and "x" in size and size.split("x")[0].isdigit():
            w, h = (int(p) for p in size.split("x"))  # gpt-image-1.x on fal: "1536x1024"
            return w, h
        if isinstance(size, str):
            if size not in FAL_PRESETS:
                raise _Invalid("image_size", "Input should be 'square_hd', 'square', "
                               "'portrait_4_3', 'portrait_16_9', 'landscape_4_3' or "
                               "'landscape_16_9'", "literal_error")
            return FAL_PRESETS[size]
        if isinstance(size, dict):
            w, h = size.get("width", 512), size.get("height", 512)
            for name, v in (("width", w), ("height", h)):
                if not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= 14142:
                    raise _Invalid("image_size", f"{name} should be an integer in 1..14142",
                                   "less_than_equal", {"le": 14142})
            return w, h
        raise _Invalid("image_size", "Input should be a preset name or {width, height}",
                       "model_attributes_type")

    # errors -------------------------------------------------------------------------
    def _headers(self, rid: str | None, error_type: str | None = None) -> dict[str, str]:
        headers = {"x-fal-request-id": rid or new_request_id()}
        if error_type:
            headers["X-Fal-Error-Type"] = error_type
        return headers

    def _detail(self, status: int, detail: Any, rid: str | None = None) -> Reply:
        return Reply.json(status, {"detail": detail}, self._headers(rid))

    def error_reply(self, status: int, stage: str | None, message: str | None = None,
                    retry_after: float | None = None) -> Reply:
        if stage == "download":
            return Reply(status, b"Not Found" if status == 404 else b"Error",
                         {"Content-Type": "text/plain"})
        error_type = {429: "rate_limited", 503: "runner_scheduling_failure",
                      504: "request_timeout"}.get(status)
        text = message or {401: "Unauthorized", 429: "Concurrent request limit exceeded",
                           500: "Internal server error", 503: "No runner available",
                           504: "Request timed out"}.get(status, f"Simulated error {status}")
        body: dict[str, Any] = {"detail": text}
        if error_type:
            body["error_type"] = error_type
        return Reply.json(status, body, self._headers(None, error_type))

    def wrong_shape(self, stage: str | None) -> Any:
        if stage == "submit":
            return {"status": "IN_QUEUE"}
        if stage == "status":
            return {"status": "IN_PROGRESS"}
        return {"seed": 1, "timings": {}}


def _err(loc: list[str], msg: str, type_: str) -> dict[str, Any]:
    return {"loc": loc, "msg": msg, "type": type_, "url": f"https://docs.fal.ai/errors#{type_}"}


def _content_body() -> dict[str, Any]:
    item = _err(["body", "prompt"], "The content could not be processed because it contained "
                "material flagged by a content checker.", "content_policy_violation")
    return {"detail": [item]}


def _failure(status: int, body: Any) -> tuple[int, Any, str, str]:
    if status == 422:
        default: Any = {"detail": [_err(["body"], "Simulated model failure", "value_error")]}
        return status, body or default, "Simulated model failure", "validation_error"
    default = {"detail": "Internal server error (simulated model failure)",
               "error_type": "internal_server_error"}
    return status, body or default, "Internal server error", "internal_server_error"


def _log(message: str) -> dict[str, Any]:
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")
    return {"message": message, "level": "INFO", "source": "USER", "timestamp": stamp}
