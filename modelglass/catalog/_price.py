"""Prices as providers bill them: the price kinds, the estimate, its upper bound, and usage cost.

Every function here is pure. :class:`~modelglass.catalog.Price` (the YAML schema) lives in
``_schema.py``; this module turns a ``Price`` plus a job (size, ``n``, steps, tier, prompt) into a
:class:`CostEstimate`, and a provider's reported token ``usage`` into an actual cost.

Two numbers come out of every estimate:

- ``usd``: the expected cost of the call (what routing ranks on and what a result reports when the
  provider does not say what it charged);
- ``max_usd``: an upper bound of what the call can cost, for budget reservations. It includes every
  token kind (prompt text tokens bounded by the prompt's UTF-8 byte count, since a byte-level BPE
  token is at least one byte), the dearest tier when the tier is not fixed, the prompt repeated for
  every chunk when ``n`` is split over several calls, and a 2× margin on estimated GPU time.

Unknown stays unknown: an ``unknown`` price gives ``usd=None`` and ``max_usd=None``, never $0.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from ..errors import InvalidRequest
from ._buckets import bucket_long_side
from ._schema import Price, PriceKind
from ._tokens import estimate_text_tokens

_N = TypeVar("_N", int, float)  # a price per image, or a token count

__all__ = [
    "BILLED_MEGAPIXEL",
    "PROMPT_TOKEN_OVERHEAD",
    "CostEstimate",
    "check_estimate_inputs",
    "cost_from_usage",
    "estimate_price",
    "prompt_tokens",
    "resolution_bucket",
]

#: Providers bill a megapixel as 1024×1024 pixels (a 1024² image is 1 MP, 1536×1024 is 1.5 MP).
BILLED_MEGAPIXEL = 1024 * 1024

#: Tokens a token-priced API may add around the prompt (role and formatting), counted in the bound.
PROMPT_TOKEN_OVERHEAD = 16

#: Typical characters per text token for English prose with OpenAI's tokenizers (the expected
#: cost; other scripts are counted by :mod:`._tokens`); the bound uses one token per UTF-8 byte,
#: which no byte-level BPE can exceed.
CHARS_PER_TOKEN = 4


@dataclass(frozen=True)
class CostEstimate:
    """An estimated cost: ``usd`` for the whole call, None when the price is unknown.

    - ``per_image_usd``: ``usd / n`` (what routing compares and axis ceilings check).
    - ``max_usd``: an upper bound of what the call can cost, usable as a budget reservation: every
      token kind (the prompt at one token per UTF-8 byte), the dearest tier when the tier is not
      fixed, the prompt once per chunk when ``n`` is split over calls, 2× on estimated GPU time.
      Equal to ``usd`` when the price is exact; None when the price is unknown.
    - ``basis`` says how it was computed, for people; ``approximate`` is True when a table had to
      be interpolated (a size not in a table, a GPU time scaled from another size).
    - ``tier``: the provider quality tier priced; ``offer``: which offer was priced
      (``model@provider``), set by :meth:`Catalog.estimate_cost` and :meth:`OfferView.estimate_cost`.
    - ``prompt_tokens``: the text tokens the estimate assumed per call (token-priced offers).

    >>> CostEstimate(0.05, 0.025, "$0.025/image × 2").max_usd
    0.05
    """

    usd: float | None
    per_image_usd: float | None
    basis: str
    approximate: bool = False
    tier: str | None = None
    max_usd: float | None = None
    offer: str | None = None
    prompt_tokens: int | None = None

    def __post_init__(self) -> None:
        if self.max_usd is None and self.usd is not None:
            object.__setattr__(self, "max_usd", self.usd)

    @property
    def known(self) -> bool:
        return self.usd is not None


def prompt_tokens(prompt: str | None) -> tuple[int, int]:
    """(expected, upper bound) text tokens for a prompt.

    Expected: by script (:func:`~modelglass.catalog._tokens.estimate_text_tokens`): ``chars / 4``
    for English and other Latin text, one token per CJK character, half one for other scripts.
    Upper bound: the UTF-8 byte count plus :data:`PROMPT_TOKEN_OVERHEAD` (a byte-level BPE token
    covers at least one byte).

    >>> prompt_tokens("a red bicycle"), prompt_tokens("日本語")
    ((4, 29), (3, 25))
    """
    if not prompt:
        return 0, PROMPT_TOKEN_OVERHEAD if prompt is not None else 0
    expected = estimate_text_tokens(prompt)
    nbytes = len(prompt.encode("utf-8", "surrogatepass"))
    return expected, nbytes + PROMPT_TOKEN_OVERHEAD


def resolution_bucket(price: Price, width: int, height: int) -> str | None:
    """The smallest bucket of ``price.resolution_multipliers`` whose long side holds the output.

    >>> from modelglass.catalog import Price
    >>> p = Price(kind="per_image_resolution", usd=0.134,
    ...           resolution_multipliers={"1K": 1, "2K": 1, "4K": 1.79})
    >>> resolution_bucket(p, 1376, 768), resolution_bucket(p, 2048, 2048), resolution_bucket(p, 4096, 4096)
    ('1K', '2K', '4K')
    """
    long_side = max(width, height)
    buckets = sorted((bucket_long_side(b, price.resolution_long_side), b)
                     for b in price.resolution_multipliers or {})
    for side, name in buckets:
        if long_side <= side:
            return name
    return None


def _check_job(width: int, height: int, n: int) -> None:
    if type(width) is int and type(height) is int and type(n) is int \
            and width >= 1 and height >= 1 and n >= 1:
        return  # the common case, without building the loop below
    for name, v in (("width", width), ("height", height), ("n", n)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise InvalidRequest(f"{name} must be a whole number ≥ 1, got {v!r}", field=name)


def _resolve_tier(price: Price, table: Mapping[str, Any], quality: str | None,
                  tier: str | None) -> tuple[str, bool]:
    """(tier to price, whether the tier is fixed). ``auto`` or no tier → default, not fixed."""
    if tier and tier != "auto":
        return tier, True
    chosen = (price.tier_for_quality or {}).get(str(quality) if quality else "") \
        or price.default_tier or next(iter(table))
    return chosen, tier is None


def _area(size: str) -> int:
    w, h = (int(p) for p in size.lower().split("x"))
    return w * h


def _nearest(table: Mapping[str, Any], width: int, height: int) -> str:
    return min(table, key=lambda s: abs(math.log(_area(s) / (width * height))))


def estimate_price(price: Price, width: int, height: int, n: int = 1, *, steps: int | None = None,
                   default_steps: int | None = None, quality: str | None = None,
                   tier: str | None = None, gpu_hour_usd: float = 2.0, prompt: str | None = None,
                   images_per_call: int | None = None) -> CostEstimate:
    """What ``n`` images of ``width``×``height`` cost under ``price`` (see :class:`CostEstimate`).

    ``prompt`` matters for token-priced offers (its text tokens are billed once per call);
    ``images_per_call`` is how many images one call makes (``n`` is split into
    ``ceil(n / images_per_call)`` calls; unknown → one call expected, ``n`` calls in the bound).

    Raises :class:`InvalidRequest` for a width, height or ``n`` below 1.
    """
    _check_job(width, height, n)
    est = _estimate(price, width, height, n, steps, default_steps, quality, tier, gpu_hour_usd,
                    prompt, images_per_call)
    if not (_sane(est.usd) and _sane(est.per_image_usd) and _sane(est.max_usd)):
        # Never let an overflow or a poisoned figure reach a budget: unknown, said plainly.
        return CostEstimate(None, None, f"the price does not give a finite cost ({est.basis})",
                            tier=est.tier)
    return est


def _sane(x: float | None) -> bool:
    """None, or a finite figure >= 0."""
    return x is None or (math.isfinite(x) and x >= 0)


def _estimate(price: Price, width: int, height: int, n: int, steps: int | None,
              default_steps: int | None, quality: str | None, tier: str | None,
              gpu_hour_usd: float, prompt: str | None,
              images_per_call: int | None) -> CostEstimate:
    kind = price.kind
    if kind is PriceKind.unknown:
        return CostEstimate(None, None, "price unknown" + (f" ({price.note})" if price.note else ""))
    if kind is PriceKind.per_image:
        assert price.usd is not None
        return CostEstimate(price.usd * n, price.usd, f"${price.usd:g}/image × {n}")
    if kind is PriceKind.per_megapixel:
        assert price.usd_per_megapixel is not None
        mp = width * height / BILLED_MEGAPIXEL
        if price.round_up_megapixels:
            mp = max(math.ceil(mp - 1e-9), 1)
        each = price.usd_per_megapixel * mp
        return CostEstimate(each * n, each,
                            f"${price.usd_per_megapixel:g}/MP × {mp:.2f} MP × {n}")
    if kind is PriceKind.first_megapixel:
        assert price.usd is not None and price.usd_per_extra_megapixel is not None
        extra = max(width * height / BILLED_MEGAPIXEL - 1, 0.0)
        if price.round_up_megapixels is not False:  # rounded up unless the catalog says not
            extra = math.ceil(extra - 1e-9)
        each = price.usd + price.usd_per_extra_megapixel * extra
        return CostEstimate(each * n, each, f"${price.usd:g} first MP + "
                            f"${price.usd_per_extra_megapixel:g} × {extra:g} extra MP × {n}")
    if kind is PriceKind.per_image_resolution:
        assert price.usd is not None and price.resolution_multipliers
        bucket = resolution_bucket(price, width, height)
        if bucket is None:
            return CostEstimate(None, None, f"{width}x{height} is larger than the largest priced "
                                f"resolution ({', '.join(price.resolution_multipliers)})")
        each = price.usd * price.resolution_multipliers[bucket]
        return CostEstimate(each * n, each, f"${price.usd:g} × {price.resolution_multipliers[bucket]:g}"
                            f" ({bucket}) per image × {n}")
    if kind is PriceKind.per_tier:
        return _per_tier(price, width, height, n, quality, tier)
    if kind is PriceKind.per_token:
        return _per_token(price, width, height, n, quality, tier, prompt, images_per_call)
    if kind is PriceKind.gpu_seconds:
        assert price.seconds is not None
        mp = width * height / 1e6
        secs = price.seconds * mp / price.at_megapixels
        approximate = abs(mp - price.at_megapixels) > 0.01
        if price.at_steps and (steps or default_steps):
            secs *= (steps or default_steps or price.at_steps) / price.at_steps
            approximate = approximate or (steps or default_steps) != price.at_steps
        each = secs * gpu_hour_usd / 3600
        return CostEstimate(each * n, each, f"{secs:.2f} GPU-s × ${gpu_hour_usd:g}/GPU-h × {n}",
                            approximate=approximate, max_usd=each * n * 2)
    raise AssertionError(kind)  # pragma: no cover


def _per_size(tables: Mapping[str, Mapping[str, _N]], chosen: str, fixed: bool, width: int,
              height: int, unlisted: Callable[[_N, int, int], tuple[_N, _N]],
              ) -> tuple[_N, _N, bool, str | None]:
    """``(expected, bound, approximate, nearest listed size)`` for one image of ``width``×``height``
    in tier ``chosen`` of ``tables`` (tier → size → a price or a token count). A size not listed
    takes ``unlisted(value at the nearest listed size, its pixels, that size's pixels)``; when the
    tier is not ``fixed`` the bound is the largest over every tier."""
    key = f"{width}x{height}"

    def one(name: str) -> tuple[_N, _N, bool, str | None]:
        table = tables[name]
        if key in table:
            return table[key], table[key], False, None
        near = _nearest(table, width, height)
        expected, bound = unlisted(table[near], width * height, _area(near))
        return expected, bound, True, near

    expected, bound, approx, near = one(chosen)
    if not fixed:
        bound = max(one(t)[1] for t in tables)
    return expected, bound, approx, near


def _per_tier(price: Price, width: int, height: int, n: int, quality: str | None,
              tier: str | None) -> CostEstimate:
    assert price.tiers is not None
    chosen, fixed = _resolve_tier(price, price.tiers, quality, tier)
    if chosen not in price.tiers:
        return CostEstimate(None, None, f"tier {chosen!r} has no price", tier=chosen)
    key = f"{width}x{height}"

    def by_area(listed: float, pixels: int, listed_pixels: int) -> tuple[float, float]:
        scaled = listed * pixels / listed_pixels
        # A smaller size is not assumed cheaper than the nearest listed one in the bound.
        return scaled, max(scaled, listed)

    each, dearest, approx, near = _per_size(price.tiers, chosen, fixed, width, height, by_area)
    if approx:
        assert near is not None
        basis = (f"{chosen} tier ≈ ${price.tiers[chosen][near]:g} at {near} scaled by area to "
                 f"{key} × {n}")
    else:
        basis = f"{chosen} tier {key}: ${each:g}/image × {n}"
    return CostEstimate(each * n, each, basis, approximate=approx, tier=chosen,
                        max_usd=dearest * n)


def _per_token(price: Price, width: int, height: int, n: int, quality: str | None,
               tier: str | None, prompt: str | None, images_per_call: int | None) -> CostEstimate:
    assert price.output_tokens is not None and price.usd_per_1m_image_output_tokens is not None
    chosen, fixed = _resolve_tier(price, price.output_tokens, quality, tier)
    if chosen not in price.output_tokens:
        return CostEstimate(None, None, f"tier {chosen!r} has no output-token table", tier=chosen)
    key = f"{width}x{height}"

    def nearest_count(listed: int, pixels: int, listed_pixels: int) -> tuple[int, int]:
        # Not in the table: the nearest listed size's count (token counts do not follow area),
        # bounded by that count scaled up by area when this size is larger.
        return listed, math.ceil(listed * max(1.0, pixels / listed_pixels))

    out_exp, out_max, approx, _ = _per_size(price.output_tokens, chosen, fixed, width, height,
                                            nearest_count)
    calls = math.ceil(n / images_per_call) if images_per_call else 1
    calls_max = math.ceil(n / images_per_call) if images_per_call else n
    text_exp, text_max = prompt_tokens(prompt)
    if price.usd_per_1m_text_input_tokens is None and text_max:
        # The prompt is billed but its rate is unknown: so is the cost (never counted as $0).
        return CostEstimate(None, None, "the text-input token price is unknown, and the prompt "
                            "is billed", tier=chosen)
    text_rate = price.usd_per_1m_text_input_tokens or 0.0
    out_rate = price.usd_per_1m_image_output_tokens
    usd = (n * out_exp * out_rate + calls * text_exp * text_rate) / 1e6
    bound = (n * out_max * out_rate + calls_max * text_max * text_rate) / 1e6
    basis = (f"{chosen} tier {key}: {out_exp} image tokens × ${out_rate:g}/1M × {n}"
             + (f" + {text_exp} prompt tokens × ${text_rate:g}/1M × {calls} call"
                f"{'s' if calls != 1 else ''}" if text_exp else ""))
    if approx:
        basis += f"; {key} is not in the token table, nearest size used"
    return CostEstimate(round(usd, 9), round(usd / n, 9), basis, approximate=approx,
                        tier=chosen, max_usd=round(bound, 9), prompt_tokens=text_exp)


def _get(obj: Any, key: str) -> Any:
    if obj is None:
        return None
    if isinstance(obj, Mapping):
        return obj.get(key)
    return getattr(obj, key, None)


def _count(value: Any) -> int | None:
    """A token count from a reply: a finite whole number ≥ 0, else None (malformed)."""
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if not math.isfinite(value) or value < 0 or value != int(value):
        return None
    return int(value)


def cost_from_usage(price: Price, usage: Any) -> float | None:
    """The actual USD of one reply from its ``usage`` (OpenAI Images API shape), or None.

    ``usage`` has ``output_tokens`` (image output), ``input_tokens`` and optionally
    ``input_tokens_details: {text_tokens, image_tokens}`` and ``output_tokens_details:
    {image_tokens, text_tokens}`` (output text priced at ``usd_per_1m_text_output_tokens`` where
    the price gives it); a mapping or an object. None when the
    price is not token-priced, a needed token price is unknown, ``output_tokens`` is missing, or a
    count is malformed (negative, fractional, NaN, not a number): the caller keeps its estimate.

    >>> from modelglass.catalog import Price
    >>> p = Price(kind="per_token", usd_per_1m_image_output_tokens=30, usd_per_1m_text_input_tokens=5,
    ...           output_tokens={"low": {"1024x1024": 200}})
    >>> cost_from_usage(p, {"output_tokens": 200, "input_tokens": 10})
    0.00605
    """
    if price.kind is not PriceKind.per_token or usage is None:
        return None
    out_rate = price.usd_per_1m_image_output_tokens
    if _get(usage, "output_tokens") is None or out_rate is None:
        return None
    output = _count(_get(usage, "output_tokens"))
    input_total = _count(_get(usage, "input_tokens"))
    details = _get(usage, "input_tokens_details")
    if details is not None:
        text, image = _count(_get(details, "text_tokens")), _count(_get(details, "image_tokens"))
    else:
        text, image = input_total, 0
    if output is None or input_total is None or text is None or image is None:
        return None
    text_rate, image_rate = price.usd_per_1m_text_input_tokens, price.usd_per_1m_image_input_tokens
    if (text and text_rate is None) or (image and image_rate is None):
        return None
    # Text the model wrote besides the image, at its own rate where the price gives one.
    out_details = _get(usage, "output_tokens_details")
    text_out = _count(_get(out_details, "text_tokens")) if out_details is not None else 0
    if text_out is None or text_out > output:
        return None
    text_out_rate = price.usd_per_1m_text_output_tokens
    if text_out_rate is None:
        text_out_rate, text_out = out_rate, 0  # all output at the image rate, as before
    usd = ((output - text_out) * out_rate + text_out * text_out_rate
           + text * (text_rate or 0) + image * (image_rate or 0))
    return round(usd / 1e6, 6)


def check_estimate_inputs(*, width: Any, height: Any, n: Any, steps: Any = None) -> None:
    """``estimate_cost`` arguments: whole numbers, sides >= 1 px, ``n`` >= 1, ``steps`` >= 1;
    else :class:`InvalidRequest` naming the argument (never a division by zero or a negative
    price)."""
    if type(width) is int and type(height) is int and type(n) is int \
            and width >= 1 and height >= 1 and n >= 1 \
            and (steps is None or (type(steps) is int and steps >= 1)):
        return  # the common case, without building the loop below
    for name, value, low in (("width", width, 1), ("height", height, 1), ("n", n, 1),
                             ("steps", steps, 1)):
        if name == "steps" and value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise InvalidRequest(f"estimate_cost({name}={value!r}): must be a whole number >= "
                                 f"{low}", field=name)
