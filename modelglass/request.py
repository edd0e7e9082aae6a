"""What the user asks for: :class:`ImageRequest`, :class:`Quality`, and the geometry parsers.

Everything here is pure: no catalog, no provider. Offer-specific limits (prompt length, step
ranges, sizes) are not errors here; the planner reports them as fates.
"""

from __future__ import annotations

import json
import math
import re
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import InvalidRequest

__all__ = [
    "CONTROL_NAMES",
    "SEED_MAX",
    "ImageRequest",
    "Quality",
    "Sampler",
    "parse_aspect_ratio",
    "parse_print_size",
    "parse_size",
]

SEED_MAX = 2**32 - 1
MAX_PROMPT_CHARS = 100_000
MAX_N = 16
#: Sizes and aspect ratios lie within 1:MAX_RATIO .. MAX_RATIO:1.
MAX_RATIO = 8

#: Controls a request can carry, in the order fates are reported.
CONTROL_NAMES = ("prompt", "negative_prompt", "cfg", "steps", "seed", "size", "n", "sampler")


class Quality(StrEnum):  # str(): "hero", not "Quality.hero"
    """The job's quality axis: what the image is for. Each is defined as data in the catalog."""

    draft = "draft"
    thumbnail = "thumbnail"
    hero = "hero"
    print = "print"


class Sampler(StrEnum):
    """Unified sampler names (A1111 vocabulary), mapped per pipeline by the local backend."""

    euler = "euler"
    euler_a = "euler_a"
    dpmpp_2m = "dpmpp_2m"
    dpmpp_2m_karras = "dpmpp_2m_karras"
    ddim = "ddim"
    unipc = "unipc"
    lcm = "lcm"


_SIZE_RE = re.compile(r"^\s*(\d+)\s*[xX×]\s*(\d+)\s*$")
_ASPECT_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*:\s*(\d+(?:\.\d+)?)\s*$")
_PRINT_RE = re.compile(
    r"^\s*(\d+(?:\.\d+)?)\s*[xX×]\s*(\d+(?:\.\d+)?)\s*(in|inch|inches|cm|mm|\")\s*$"
)
_ISO_PAPER_MM = {
    "A0": (841, 1189), "A1": (594, 841), "A2": (420, 594), "A3": (297, 420),
    "A4": (210, 297), "A5": (148, 210), "A6": (105, 148),
    "LETTER": (215.9, 279.4), "LEGAL": (215.9, 355.6),
}


def parse_size(text: str) -> tuple[int, int]:
    """``"1536x1024"`` → ``(1536, 1024)``. Sides must be 64..16384 pixels."""
    w, h = (int(g) for g in _read(_SIZE_RE, "size", text,
                                  "WIDTHxHEIGHT in pixels, e.g. '1024x1024'"))
    _sides_within("size", text, (w, h), 64, 16384, "pixels")
    _ratio_within("size", text, w, h)  # the bound of aspect_ratio, so neither slips past the other
    return w, h


def parse_aspect_ratio(text: str) -> tuple[float, float]:
    """``"3:2"`` → ``(3.0, 2.0)``. The ratio must lie within 1:8 .. 8:1."""
    w, h = (float(g) for g in _read(_ASPECT_RE, "aspect_ratio", text,
                                    "W:H, e.g. '3:2' or '16:9'"))
    _ratio_within("aspect_ratio", text, w, h)
    return w, h


def parse_print_size(text: str) -> tuple[float, float]:
    """A physical print size in inches: ``"8x10in"``, ``"20x30cm"``, ``"210x297mm"``, ``"A4"``."""
    paper = str(text).strip().upper()
    if paper in _ISO_PAPER_MM:
        w_mm, h_mm = _ISO_PAPER_MM[paper]
        return w_mm / 25.4, h_mm / 25.4
    width, height, unit = _read(_PRINT_RE, "print_size", text, "understood: use '8x10in', "
                                "'20x30cm', '210x297mm' or a paper name "
                                f"({', '.join(sorted(_ISO_PAPER_MM))})")
    factor = {"cm": 1 / 2.54, "mm": 1 / 25.4}.get(unit, 1.0)
    w, h = float(width) * factor, float(height) * factor
    _sides_within("print_size", text, (w, h), 0.5, 120, "inches")
    return w, h


def _read(pattern: re.Pattern[str], field: str, text: str, form: str) -> tuple[str, ...]:
    """The groups of ``pattern`` in ``text``, or an InvalidRequest: ``field`` is not ``form``."""
    m = pattern.match(str(text))
    if not m:
        raise InvalidRequest(f"{field} {text!r} is not {form}", field=field)
    return m.groups()


def _sides_within(field: str, text: str, sides: tuple[float, float], low: float, high: float,
                  unit: str) -> None:
    if not all(low <= side <= high for side in sides):
        raise InvalidRequest(f"{field} {text!r}: each side must be {low:g}..{high:g} {unit}",
                             field=field)


def _ratio_within(field: str, text: str, w: float, h: float) -> None:
    if w <= 0 or h <= 0 or not 1 / MAX_RATIO <= w / h <= MAX_RATIO:
        raise InvalidRequest(f"{field} {text!r}: the aspect ratio must lie within "
                             f"1:{MAX_RATIO} .. {MAX_RATIO}:1", field=field)


class ImageRequest(BaseModel):
    """One image job, in the user's words.

    Only ``prompt`` is required. Unset controls (``None``) are left to the offer's defaults and get
    no fate; every control you set gets exactly one fate in the plan.

    >>> ImageRequest(prompt="a lighthouse at dusk", quality="hero", size="1536x1024").pixel_size()
    (1536, 1024)
    """

    model_config = ConfigDict(extra="forbid", frozen=True, use_enum_values=False)

    prompt: str
    #: A shipped axis (:class:`Quality`) or the name of a routing policy's own axis.
    quality: Quality | str = Quality.hero
    negative_prompt: str | None = None
    cfg: float | None = Field(default=None, ge=0.0, le=50.0)
    steps: int | None = Field(default=None, ge=1, le=500)
    seed: int | None = Field(default=None, ge=0, le=SEED_MAX)
    size: str | None = None
    aspect_ratio: str | None = None
    print_size: str | None = None
    dpi: int | None = Field(default=None, ge=72, le=1200)
    n: int = Field(default=1, ge=1, le=MAX_N)
    sampler: Sampler | None = None
    max_cost_usd: float | None = Field(default=None, gt=0)
    #: Hard limit on the offer's p90 latency in seconds (observed where measured, else catalog).
    max_latency_s: float | None = Field(default=None, gt=0)
    strict: bool = False
    commercial: bool = False
    model: str | None = None
    provider: str | None = None
    provider_options: dict[str, dict[str, Any]] = Field(default_factory=dict)
    #: The text the image should spell, for the text check (default: the prompt's quoted text).
    #: Never sent to a provider.
    expect_text: str | None = None

    @field_validator("steps", "seed", "n", "dpi", mode="before")
    @classmethod
    def _whole(cls, v: Any) -> Any:
        # pydantic reads True as 1: steps=True must not become one step.
        if isinstance(v, bool):  # pydantic turns ValueError (not TypeError) into a field error
            raise ValueError(f"must be a whole number, not {v!r}")  # noqa: TRY004
        if isinstance(v, float) and not v.is_integer():
            raise ValueError(f"must be a whole number, not {v!r}")
        return v

    @field_validator("cfg", "max_cost_usd", "max_latency_s", mode="before")
    @classmethod
    def _finite(cls, v: Any) -> Any:
        if isinstance(v, bool):
            raise ValueError(f"must be a number, not {v!r}")  # noqa: TRY004
        if isinstance(v, (int, float)) and not math.isfinite(v):
            raise ValueError(f"must be a finite number, not {v!r}")
        return v

    @field_validator("quality", mode="before")
    @classmethod
    def _quality(cls, v: Any) -> Any:
        # The four shipped axes stay Quality members; any other name is a policy's own axis,
        # checked against the policy when the request is routed.
        if isinstance(v, str) and not isinstance(v, Quality):
            name = v.strip()
            if name in Quality.__members__:
                return Quality(name)
            if not re.fullmatch(r"[a-z0-9][a-z0-9_\-]{0,63}", name):
                raise ValueError(f"quality {v!r} is not an axis name (draft, thumbnail, hero, "
                                 "print, or a policy's own axis such as 'social-card')")
            return name
        return v

    @field_validator("prompt")
    @classmethod
    def _prompt(cls, v: str) -> str:
        if not v or not v.strip():
            raise ValueError("prompt must not be empty")
        if len(v) > MAX_PROMPT_CHARS:
            raise ValueError(f"prompt is {len(v)} characters; at most {MAX_PROMPT_CHARS}")
        _utf8("prompt", v)
        return v

    @field_validator("negative_prompt")
    @classmethod
    def _negative(cls, v: str | None) -> str | None:
        if v is not None and not v.strip():
            return None
        if v is not None:
            _utf8("negative_prompt", v)
        return v

    @field_validator("expect_text")
    @classmethod
    def _expect_text(cls, v: str | None) -> str | None:
        if v is None:
            return None
        if not v.strip():
            raise ValueError("expect_text must not be empty (leave it out to check the prompt's "
                             "quoted text)")
        if len(v) > 500:
            raise ValueError(f"expect_text is {len(v)} characters; at most 500")
        _utf8("expect_text", v)
        return v.strip()

    @field_validator("size")
    @classmethod
    def _size(cls, v: str | None) -> str | None:
        if v is None:
            return None
        w, h = parse_size(v)
        return f"{w}x{h}"

    @field_validator("aspect_ratio")
    @classmethod
    def _aspect(cls, v: str | None) -> str | None:
        if v is None:
            return None
        parse_aspect_ratio(v)
        return v.strip().replace(" ", "")

    @field_validator("print_size")
    @classmethod
    def _print(cls, v: str | None) -> str | None:
        if v is None:
            return None
        parse_print_size(v)
        return v.strip()

    @field_validator("provider_options")
    @classmethod
    def _options(cls, v: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        from ._options import known_providers

        for key, val in v.items():
            if key not in known_providers():
                raise ValueError(f"provider_options has the unknown provider {key!r}; the "
                                 f"providers are {', '.join(known_providers())}")
            if not isinstance(val, dict):
                raise ValueError(  # noqa: TRY004 - pydantic turns ValueError into a field error
                    f"provider_options[{key!r}] must be a mapping of field → value")
            # Options are sent as JSON: what cannot be sent is the caller's error, found here
            # rather than blamed on the provider (and fallen back on) after routing.
            try:
                json.dumps(val, allow_nan=False, ensure_ascii=False).encode("utf-8")
            except (TypeError, ValueError) as exc:
                raise ValueError(f"provider_options[{key!r}] cannot be sent as JSON ({exc}); "
                                 f"use strings, numbers, booleans, lists and mappings") from None
        return v

    @model_validator(mode="after")
    def _geometry(self) -> ImageRequest:
        given = [k for k in ("size", "aspect_ratio", "print_size") if getattr(self, k) is not None]
        if len(given) > 1:
            raise ValueError(f"give only one of size, aspect_ratio, print_size (got {', '.join(given)})")
        if self.dpi is not None and self.print_size is None:
            raise ValueError("dpi only applies with print_size, e.g. print_size='8x10in', dpi=300")
        return self

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise _invalid(exc) from None

    # -- geometry ---------------------------------------------------------------------------------
    def pixel_size(self, default_dpi: int = 300) -> tuple[int, int] | None:
        """The exact pixel size asked for: ``size``, or ``print_size × dpi``; None otherwise.

        ``default_dpi`` applies when ``dpi`` is not set (the planner passes the quality axis's).
        """
        if self.size:
            return parse_size(self.size)
        if self.print_size:
            w_in, h_in = parse_print_size(self.print_size)
            dpi = self.dpi or default_dpi
            return round(w_in * dpi), round(h_in * dpi)
        return None

    def aspect(self) -> float | None:
        """Width / height asked for, from whichever geometry field is set."""
        px = self.pixel_size()
        if px:
            return px[0] / px[1]
        if self.aspect_ratio:
            w, h = parse_aspect_ratio(self.aspect_ratio)
            return w / h
        return None

    def requested_controls(self) -> list[str]:
        """The controls this request sets, each of which the plan must give a fate."""
        out = ["prompt"]
        if self.negative_prompt is not None:
            out.append("negative_prompt")
        if self.cfg is not None:
            out.append("cfg")
        if self.steps is not None:
            out.append("steps")
        if self.seed is not None:
            out.append("seed")
        if self.size or self.aspect_ratio or self.print_size:
            out.append("size")
        if self.n != 1:
            out.append("n")
        if self.sampler is not None:
            out.append("sampler")
        return out


def _utf8(field: str, text: str) -> None:
    """A prompt is sent as UTF-8: a lone surrogate (e.g. from a bad decode) cannot be, and a NUL
    character (from a C string or a binary paste) is cut off or refused along the way."""
    if "\x00" in text:
        raise ValueError(f"{field} holds a NUL character (\\x00) at position {text.index(chr(0))}; "
                         "remove it (it is cut off or refused on the way to the provider)")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"{field} holds a character that is not valid Unicode (a lone surrogate "
                         f"{text[exc.start]!r} at position {exc.start}); it cannot be sent") from None


def _invalid(exc: ValidationError) -> InvalidRequest:
    """Turn pydantic's report into one InvalidRequest naming each bad field and what is allowed."""
    parts = []
    first_field = None
    for err in exc.errors():
        loc = ".".join(str(p) for p in err.get("loc", ())) or "request"
        first_field = first_field or loc
        msg = err.get("msg", "invalid").removeprefix("Value error, ")
        if err.get("type") == "extra_forbidden":
            msg = "unknown field; see ImageRequest for the fields (provider-specific ones go in provider_options)"
        if err.get("type") == "enum":
            msg = f"{msg}"
        parts.append(f"{loc}: {msg}")
    return InvalidRequest("invalid request: " + "; ".join(parts), field=first_field)
