"""The OpenAI Images API simulator (``POST /v1/images/generations`` and ``/v1/images/edits``).

Validation follows the wire-format notes §1.3: model lifecycle (retired models answer 404
``model_not_found``), sizes, quality tiers and ``n`` per model family. GPT image models answer
``data[].b64_json`` plus ``usage``; DALL·E (only when not retired) answers URLs on ``/files``.

``usage`` is deterministic so tests can compute cost from it:

* ``input_tokens`` = ``text_tokens`` = the prompt's tokens by script (``ceil(len(prompt) / 4)``
  for English, one per CJK character: ``modelglass.catalog._tokens``) (+ 256 per input image on
  edits)
* ``output_tokens`` = ``image_tokens`` = ``n * round(T[quality] * width * height / 1024**2)`` with
  ``T = {low: 272, medium: 1056, high: 4160, xhigh: 6240, max: 8320}``; ``auto`` counts as medium.

OpenAI takes no seed, and a new request gives new images: generation *k* (counting answered
requests from the start or ``sim.reset()``) renders image *i* with seed :func:`render_seed`
``(k, i)`` = ``(k mod 16) * 100 + i``. A retry therefore gets a different image, while a loop of
requests reuses 16 renders per size (the render cache keeps throughput benchmarks honest).
"""

from __future__ import annotations

import base64
import email.parser
import email.policy
import re
import time
from typing import Any

from ._faults import Fault
from ._images import normalize_format
from ._server import DROP, FileSpec, ProviderApp, RecordedRequest, Reply, _Drop, new_request_id
from ._wire import Endpoints, openai_error

__all__ = ["DEFAULT_RETIRED", "DRAWS", "OUTPUT_TOKENS_1024", "OpenAIApp", "render_seed"]

#: How many different renders (per prompt and size) a run of requests cycles through.
DRAWS = 16


def render_seed(generation: int, index: int) -> int:
    """The seed the simulator renders image ``index`` of its ``generation``-th answer with."""
    return (generation % DRAWS) * 100 + index

DEFAULT_RETIRED = ("dall-e-2", "dall-e-3", "gpt-image-1")
OUTPUT_TOKENS_1024 = {"low": 272, "medium": 1056, "high": 4160, "xhigh": 6240, "max": 8320}

_GPT1_SIZES = {"1024x1024", "1536x1024", "1024x1536", "auto"}
_DALLE_SIZES = {"dall-e-2": {"256x256", "512x512", "1024x1024"},
                "dall-e-3": {"1024x1024", "1792x1024", "1024x1792"}}
_KNOWN_GPT = re.compile(r"^(gpt-image-(1-mini|1\.5|1|2|2\.5-(sunburst|flare)|2\.6-(sunburst|flare))"
                        r"(-\d{4}-\d{2}-\d{2})?|chatgpt-image-latest)$")
_WXH = re.compile(r"^(\d+)x(\d+)$")


class _Invalid(Exception):
    def __init__(self, message: str, param: str | None, code: str = "invalid_value",
                 status: int = 400) -> None:
        super().__init__(message)
        self.param, self.code, self.status = param, code, status


class OpenAIApp(ProviderApp):
    """Simulates ``api.openai.com/v1`` image endpoints."""

    provider = "openai"

    def __init__(self, state: Any, retired: tuple[str, ...] = DEFAULT_RETIRED) -> None:
        super().__init__(state)
        self.retired = set(retired)
        self.base_url = ""  # set once the listener has a port
        self.endpoints = Endpoints()  # the models' stored schemas; the Simulator shares its own

    def stage(self, req: RecordedRequest, role: str) -> str | None:
        if req.method == "POST" and req.path == "/v1/images/generations":
            return "generate"
        if req.method == "POST" and req.path == "/v1/images/edits":
            return "edit"
        return super().stage(req, role)

    def handle(self, req: RecordedRequest, stage: str | None, role: str) -> Reply | _Drop:
        if stage == "download":
            return self.serve_file(req)
        if stage not in ("generate", "edit"):
            return self._error(404, f"Invalid URL ({req.method} {req.path})", None,
                               "invalid_request_error", None)
        if not req.header("authorization", "").startswith("Bearer "):
            return self._error(401, "You didn't provide an API key.", None,
                               "invalid_request_error", "missing_api_key")
        if stage == "edit":
            params, n_images = _parse_multipart(req)
        else:
            params, n_images = req.json, 0
        if not isinstance(params, dict):
            return self._error(400, "We could not parse the JSON body of your request.", None,
                               "invalid_request_error", None)
        try:
            job = self._validate(params, edit=stage == "edit", n_images=n_images)
        except _Invalid as exc:
            return self._error(exc.status, str(exc), exc.param, "invalid_request_error", exc.code)
        content = self.state.faults.take(stage, ["content"])
        if content is not None:
            req.fault = "content"
            return self._content_reply(job["model"], content)
        if self.state.sleep(self.state.service_time):
            return DROP
        self.state.bill()
        return Reply.json(200, self._answer(job), self._headers())

    # validation ---------------------------------------------------------------------
    def _validate(self, p: dict[str, Any], *, edit: bool, n_images: int) -> dict[str, Any]:
        model = p.get("model")
        prompt = p.get("prompt")
        if not isinstance(prompt, str) or not prompt:
            raise _Invalid("Missing required parameter: 'prompt'.", "prompt",
                           "missing_required_parameter")
        if not isinstance(model, str) or not model:
            raise _Invalid("Missing required parameter: 'model'. Specify a model explicitly.",
                           "model", "missing_required_parameter")
        if model in self.retired or not (_KNOWN_GPT.match(model) or model in _DALLE_SIZES):
            raise _Invalid(f"The model `{model}` does not exist or you do not have access to it.",
                           None, "model_not_found", 404)
        dalle = model in _DALLE_SIZES
        if not edit:
            # OpenAI's own check of the body against the model's request schema.
            _, bad = self.endpoints.check("openai", model, p)
            if bad:
                message, param, code = openai_error(bad[0])
                raise _Invalid(message, param, code)
        if edit and n_images == 0:
            raise _Invalid("Missing required parameter: 'image'.", "image",
                           "missing_required_parameter")
        n = p.get("n", 1)
        max_n = 1 if model == "dall-e-3" else 10
        if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= max_n:
            raise _Invalid(f"Invalid 'n': must be an integer between 1 and {max_n}.", "n")
        limit = 1000 if model == "dall-e-2" else 4000 if model == "dall-e-3" else 32000
        if len(prompt) > limit:
            raise _Invalid(f"Invalid 'prompt': string too long. Expected a string with maximum "
                           f"length {limit}, but got a string with length {len(prompt)} instead.",
                           "prompt", "string_above_max_length")
        if dalle:
            return self._validate_dalle(p, model, prompt, n)
        if "response_format" in p:
            raise _Invalid("Unknown parameter: 'response_format'.", "response_format",
                           "unknown_parameter")
        if "style" in p:
            raise _Invalid("Unknown parameter: 'style'.", "style", "unknown_parameter")
        width, height, size = self._gpt_size(model, str(p.get("size", "auto")))
        quality = p.get("quality", "auto")
        tiers = {"low", "medium", "high", "auto"}
        if model.startswith("gpt-image-2.5"):
            tiers |= {"xhigh", "max"}
        if quality not in tiers:
            raise _Invalid(f"Invalid value: '{quality}'. Supported values are: "
                           f"{', '.join(sorted(tiers))}.", "quality")
        fmt = p.get("output_format", "png")
        if fmt not in ("png", "jpeg", "webp"):
            raise _Invalid(f"Invalid value: '{fmt}'. The simulator supports 'png', 'jpeg' and "
                           "'webp'.", "output_format")
        background = p.get("background", "auto")
        if background not in ("transparent", "opaque", "auto"):
            raise _Invalid(f"Invalid value: '{background}'.", "background")
        if background == "transparent" and fmt == "jpeg":
            raise _Invalid("Transparent background requires output_format png or webp.",
                           "background")
        compression = p.get("output_compression")
        if compression is not None and not (isinstance(compression, int)
                                            and 0 <= compression <= 100):
            raise _Invalid("Invalid 'output_compression': must be between 0 and 100.",
                           "output_compression")
        if p.get("stream"):
            raise _Invalid("Streaming is not supported by the modelglass simulator.", "stream",
                           "unsupported_value")
        return {"model": model, "prompt": prompt, "n": n, "width": width, "height": height,
                "size": size, "quality": "medium" if quality == "auto" else quality,
                "fmt": fmt, "background": "opaque" if background == "auto" else background,
                "dalle": False, "input_images": n_images}

    def _gpt_size(self, model: str, size: str) -> tuple[int, int, str]:
        if size == "auto":
            return 1024, 1024, "1024x1024"
        if model.startswith("gpt-image-1"):
            if size not in _GPT1_SIZES:
                raise _Invalid(f"Invalid value: '{size}'. Supported values are: '1024x1024', "
                               "'1024x1536', '1536x1024', and 'auto'.", "size")
            w, h = (int(v) for v in size.split("x"))
            return w, h, size
        m = _WXH.match(size)
        if not m:
            raise _Invalid(f"Invalid value: '{size}'. Use 'auto' or WIDTHxHEIGHT.", "size")
        w, h = int(m.group(1)), int(m.group(2))
        if w % 16 or h % 16:
            raise _Invalid(f"Invalid size '{size}': both sides must be multiples of 16.", "size")
        if max(w, h) > 3 * min(w, h):
            raise _Invalid(f"Invalid size '{size}': aspect ratio must be between 1:3 and 3:1.",
                           "size")
        if max(w, h) > 3840 or w * h > 3840 * 2160 or min(w, h) < 16:
            raise _Invalid(f"Invalid size '{size}': at most 3840x2160 pixels.", "size")
        if w * h < 655_360:
            raise _Invalid(f"Invalid size '{size}': total pixels must be at least 655,360.",
                           "size")
        return w, h, size

    def _validate_dalle(self, p: dict[str, Any], model: str, prompt: str,
                        n: int) -> dict[str, Any]:
        size = str(p.get("size", "1024x1024"))
        if size not in _DALLE_SIZES[model]:
            raise _Invalid(f"Invalid value: '{size}'. Supported values are: "
                           f"{', '.join(sorted(_DALLE_SIZES[model]))}.", "size")
        quality = p.get("quality", "standard")
        if quality not in (("standard", "hd") if model == "dall-e-3" else ("standard",)):
            raise _Invalid(f"Invalid value: '{quality}'.", "quality")
        fmt = p.get("response_format", "url")
        if fmt not in ("url", "b64_json"):
            raise _Invalid(f"Invalid value: '{fmt}'.", "response_format")
        w, h = (int(v) for v in size.split("x"))
        return {"model": model, "prompt": prompt, "n": n, "width": w, "height": h, "size": size,
                "quality": quality, "fmt": "png", "response_format": fmt, "dalle": True}

    # answers ------------------------------------------------------------------------
    def _answer(self, job: dict[str, Any]) -> dict[str, Any]:
        from ._images import render_image

        created = int(time.time())
        w, h, fmt, prompt = job["width"], job["height"], job["fmt"], job["prompt"]
        k = self.state.next_draw()
        seeds = [render_seed(k, i) for i in range(job["n"])]
        if job["dalle"]:
            data = []
            for seed in seeds:
                item: dict[str, Any] = {}
                if job["response_format"] == "url":
                    name = self.state.add_file(FileSpec(prompt, seed, w, h, "png",
                                                        model=job["model"]))
                    item["url"] = f"{self.base_url}/files/{name}"
                else:
                    item["b64_json"] = base64.b64encode(render_image(
                        prompt, seed, w, h, "png",
                        misspell=self.state.misspells(job["model"], prompt, seed))).decode()
                if job["model"] == "dall-e-3":
                    item["revised_prompt"] = f"{prompt} (revised by the simulator)"
                data.append(item)
            return {"created": created, "data": data}
        data = [{"b64_json": base64.b64encode(render_image(
                    prompt, seed, w, h, fmt,
                    misspell=self.state.misspells(job["model"], prompt, seed))).decode()}
                for seed in seeds]
        return {"created": created, "background": job["background"],
                "output_format": normalize_format(fmt), "quality": job["quality"],
                "size": job["size"], "data": data,
                "usage": usage_for(job, getattr(getattr(self, "platform", None),
                                                "openai_token_factor", 1.0))}

    def _headers(self) -> dict[str, str]:
        return {"x-request-id": f"req_{new_request_id().replace('-', '')}",
                "openai-processing-ms": str(int(self.state.service_time * 1000)),
                "x-ratelimit-limit-requests": "500", "x-ratelimit-remaining-requests": "499",
                "x-ratelimit-reset-requests": "120ms"}

    def _error(self, status: int, message: str, param: str | None, type_: str,
               code: str | None, extra: dict[str, Any] | None = None) -> Reply:
        err: dict[str, Any] = {"message": message, "type": type_, "param": param, "code": code}
        err.update(extra or {})
        return Reply.json(status, {"error": err}, self._headers())

    def _content_reply(self, model: str, fault: Fault) -> Reply:
        rid = new_request_id()
        if model.startswith("dall-e"):
            reply = self._error(
                400, "Your request was rejected as a result of our safety system. Your prompt "
                "may contain text that is not allowed by our safety system.", None,
                "invalid_request_error", "content_policy_violation")
        else:
            reply = self._error(
                400, "Your request was rejected by the safety system. If you believe this is an "
                "error, contact us at help.openai.com and include the request ID "
                f"{rid}. safety_violations=[sexual].", None, "image_generation_user_error",
                "moderation_blocked",
                {"moderation_details": {"moderation_stage": "output", "categories": ["sexual"]}})
        if fault.body is not None:
            reply = Reply.json(400, fault.body, self._headers())
        return reply

    def error_reply(self, status: int, stage: str | None, message: str | None = None,
                    retry_after: float | None = None) -> Reply:
        if status == 429:
            wait = f" Please try again in {retry_after}s." if retry_after is not None else ""
            return self._error(429, message or "Rate limit reached for gpt-image in organization "
                               f"org-simulator on images per minute: Limit 5, Used 5.{wait}",
                               None, "requests", "rate_limit_exceeded")
        if status >= 500:
            return self._error(status, message or "The server had an error while processing "
                               "your request. Sorry about that!", None, "server_error", None)
        kinds = {401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
                 403: ("invalid_request_error", "unsupported_country_region_territory",
                       "Country, region, or territory not supported."),
                 404: ("invalid_request_error", "not_found", "Not found.")}
        type_, code, text = kinds.get(status, ("invalid_request_error", None,
                                               f"Simulated error {status}."))
        return self._error(status, message or text, None, type_, code)

    def wrong_shape(self, stage: str | None) -> Any:
        return {"data": [{"foo": 1}]}


def usage_for(job: dict[str, Any], token_factor: float = 1.0) -> dict[str, Any]:
    """The deterministic ``usage`` block for a validated GPT-image job (see module docs).

    ``token_factor`` scales the image-output tokens (``sim.platform.openai_token_factor``): how a
    change of OpenAI's price per image shows in the usage a reply reports."""
    from ..catalog._tokens import estimate_text_tokens

    text = estimate_text_tokens(job["prompt"])
    image_in = 256 * job.get("input_images", 0)
    per_image = round(OUTPUT_TOKENS_1024[job["quality"]] * job["width"] * job["height"]
                      / (1024 * 1024))
    out = round(per_image * token_factor) * job["n"]
    return {"input_tokens": text + image_in,
            "input_tokens_details": {"image_tokens": image_in, "text_tokens": text},
            "output_tokens": out,
            "output_tokens_details": {"image_tokens": out, "text_tokens": 0},
            "total_tokens": text + image_in + out}


def _parse_multipart(req: RecordedRequest) -> tuple[dict[str, Any] | None, int]:
    """Form fields of an edits request (values coerced like the API does) and image count."""
    ctype = req.header("content-type") or ""
    if "multipart/form-data" not in ctype:
        return None, 0
    msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + ctype.encode() + b"\r\n\r\n" + req.body)
    fields: dict[str, Any] = {}
    images = 0
    for part in msg.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if name in ("image", "image[]"):
            images += 1
        elif name == "mask":
            fields["mask"] = True
        elif isinstance(name, str):
            payload = part.get_payload(decode=True)
            value = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
            fields[name] = int(value) if name in ("n", "output_compression") and value.isdigit() \
                else value
    return fields, images
