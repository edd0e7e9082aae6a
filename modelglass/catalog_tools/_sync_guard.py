"""What ``catalog sync`` trusts: a bounded HTTP reader and the plausibility of a synced price.

**Bounded reads.** One :class:`Deadline` covers the whole sync (every provider, every page): a
server that trickles its answer is cut off when the deadline passes, not when a per-read timeout
that restarts on every byte would end. Each answer is capped at :data:`MAX_ANSWER_BYTES`
(counted as it arrives; a larger ``Content-Length`` is refused before reading), compressed
answers are not asked for and refused, and a redirect is refused without reading its body.

**Plausible prices.** A price from a provider is written only when it is a finite number (not a
bool, not a string), its headline figure lies within :data:`PRICE_BOUNDS` for its kind, and it is
within :data:`MAX_CHANGE_FACTOR` (3×) either way of the price it replaces. Otherwise the sync lists
it as ``held: suspicious`` and writes it only when the user accepts that offer
(``catalog sync --accept OFFER``). A $0 price is written only for an offer whose catalog price is
marked free (``free: true``); never otherwise, accepted or not.
"""

from __future__ import annotations

import json
import math
import socket
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..catalog._schema import Price

__all__ = ["MAX_ANSWER_BYTES", "MAX_CHANGE_FACTOR", "PRICE_BOUNDS", "ApiError", "BoundedApi",
           "Deadline", "headline", "implausible", "unit_price_problem"]

#: The most bytes one provider answer may have (a page of fal's listing is ~30 KB).
MAX_ANSWER_BYTES = 4 * 1024 * 1024
#: A synced price further than this factor (either way) from the one it replaces is held.
MAX_CHANGE_FACTOR = 3.0
#: USD bounds of a price's headline figure, by kind: the price of one image, of one megapixel,
#: of the first megapixel, of one image at the base resolution, of 1M image-output tokens. Image
#: prices on fal, Replicate and OpenAI run from $0.001 to ~$0.30; the bounds leave a wide margin
#: and refuse what no image API charges (1e-300, 1e308).
PRICE_BOUNDS: dict[str, tuple[float, float]] = {
    "per_image": (0.0001, 5.0),
    "per_megapixel": (0.0001, 5.0),
    "first_megapixel": (0.0001, 5.0),
    "per_image_resolution": (0.0001, 5.0),
    "per_tier": (0.0001, 5.0),
    "per_token": (0.01, 1000.0),
}


class ApiError(Exception):
    """A provider API call that failed, ran out of time or answered something not trusted."""


class Deadline:
    """One deadline for a whole sync: ``left()`` seconds remain (never restarted)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return self.end - time.monotonic()

    def passed(self, where: str) -> ApiError:
        return ApiError(f"the sync's {self.seconds:g} s deadline passed while reading {where}")


def _shutdown(stream: Any) -> None:
    """Wake a read blocked on ``stream``'s socket (called from the deadline's timer thread)."""
    sock = stream.get_extra_info("socket") if stream is not None else None
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class BoundedApi:
    """JSON over HTTP with the provider's auth, under a :class:`Deadline` and a byte cap.

    Errors are :class:`ApiError` with the URL and status, never a key or a header.
    """

    def __init__(self, base: str, headers: Mapping[str, str], deadline: Deadline,
                 max_bytes: int = MAX_ANSWER_BYTES) -> None:
        import httpx

        self.base = base.rstrip("/")
        self.deadline = deadline
        self.max_bytes = max_bytes
        self.client = httpx.Client(headers={**headers, "Accept": "application/json",
                                            "Accept-Encoding": "identity"},
                                   follow_redirects=False)

    def get(self, path: str, params: Mapping[str, Any] | None = None) -> tuple[int, Any]:
        """(status, JSON body) of ``GET base+path``; 404 comes back with whatever body it had."""
        return self.request("GET", path, params=params)

    def request(self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
                body: Any = None) -> tuple[int, Any]:
        status, raw = self._read(method, path, params, body)
        url = self.base + path
        try:
            data = json.loads(raw) if raw else None
        except (ValueError, RecursionError):
            data = None
        if status != 404 and (status >= 400 or data is None):
            raise ApiError(f"HTTP {status} from {url}"
                           + (f": {str(data)[:200]}" if data is not None else ""))
        if status != 404 and not isinstance(data, dict):
            raise ApiError(f"unexpected reply from {url}: a JSON object was expected, got "
                           f"{type(data).__name__}")
        return status, data

    def _read(self, method: str, path: str, params: Mapping[str, Any] | None,
              body: Any) -> tuple[int, bytes]:
        import httpx

        url = self.base + path
        left = self.deadline.left()
        if left <= 0:
            raise self.deadline.passed(url)
        timer: threading.Timer | None = None
        try:
            with self.client.stream(method, url, params=params, json=body,
                                    timeout=httpx.Timeout(left)) as r:
                # From here on the deadline, not a per-read timeout, ends a slow answer.
                timer = threading.Timer(max(self.deadline.left(), 0.0), _shutdown,
                                        (r.extensions.get("network_stream"),))
                timer.daemon = True
                timer.start()
                self._check_head(r, url)
                return r.status_code, self._body(r, url)
        except httpx.HTTPError as exc:
            if self.deadline.left() <= 0:
                raise self.deadline.passed(url) from None
            raise ApiError(f"{type(exc).__name__} calling {url}") from None
        finally:
            if timer is not None:
                timer.cancel()

    def _check_head(self, r: Any, url: str) -> None:
        if 300 <= r.status_code < 400:
            raise ApiError(f"HTTP {r.status_code} redirect from {url} to "
                           f"{r.headers.get('location', '?')[:200]!r}: refused (a provider API "
                           "answers in place; the body was not read)")
        encoding = r.headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            raise ApiError(f"{url} answered with content-encoding {encoding!r}, which was not "
                           "asked for: refused")
        length = r.headers.get("content-length")
        if length is not None and length.strip().isdigit() and int(length) > self.max_bytes:
            raise ApiError(f"{url} announced {int(length):,} bytes, over the "
                           f"{self.max_bytes:,}-byte cap on one answer: refused, not read")

    def _body(self, r: Any, url: str) -> bytes:
        chunks: list[bytes] = []
        total = 0
        for chunk in r.iter_raw():
            total += len(chunk)
            if total > self.max_bytes:
                raise ApiError(f"the answer from {url} passed the {self.max_bytes:,}-byte cap on "
                               "one answer: refused")
            if self.deadline.left() <= 0:
                raise self.deadline.passed(url)
            chunks.append(chunk)
        if self.deadline.left() <= 0:  # the deadline's timer shut the socket: a cut, not an end
            raise self.deadline.passed(url)
        return b"".join(chunks)

    def close(self) -> None:
        self.client.close()


# ------------------------------------------------------------------------------------------------
# Plausibility
# ------------------------------------------------------------------------------------------------
def unit_price_problem(value: Any) -> str | None:
    """Why a provider's unit price cannot be used at all (None when it is a finite number ≥ 0).

    >>> unit_price_problem(True)
    'unit price True is a bool, not a number'
    >>> unit_price_problem("1"), unit_price_problem(0.03)
    ("unit price '1' is a str, not a number", None)
    """
    if isinstance(value, bool):
        return f"unit price {value!r} is a bool, not a number"
    if not isinstance(value, (int, float)):
        return f"unit price {value!r} is a {type(value).__name__}, not a number"
    if not math.isfinite(value) or value < 0:
        return f"unit price {value!r} is not a finite number ≥ 0"
    return None


def headline(price: Price) -> float | None:
    """The figure :data:`PRICE_BOUNDS` and the change factor judge: the price's base USD."""
    kind = price.kind.value
    if kind in ("per_image", "first_megapixel", "per_image_resolution"):
        return price.usd
    if kind == "per_megapixel":
        return price.usd_per_megapixel
    if kind == "per_token":
        return price.usd_per_1m_image_output_tokens
    if kind == "per_tier" and price.tiers:
        return max(v for table in price.tiers.values() for v in table.values())
    return None


def implausible(before: Price, after: Price, *,
                factor: float = MAX_CHANGE_FACTOR) -> str | None:
    """Why ``after`` should not replace ``before`` without the user's say-so (None: plausible).

    >>> from modelglass.catalog import Price
    >>> old = Price(kind="per_image", usd=0.03)
    >>> implausible(old, Price(kind="per_image", usd=0.04)) is None
    True
    >>> implausible(old, Price(kind="per_image", usd=3.0))
    '$3 is 100× the $0.03 it would replace (more than 3× either way)'
    """
    new = headline(after)
    if new is None:
        return None
    if new == 0:
        return None if before.free else "$0 for an offer the catalog does not mark free"
    lo, hi = PRICE_BOUNDS.get(after.kind.value, (0.0, math.inf))
    if not lo <= new <= hi:
        return f"${new:g} is outside the plausible ${lo:g}–${hi:g} for a {after.kind.value} price"
    old = headline(before)
    if old is not None and old > 0 and before.kind is after.kind:
        ratio = new / old
        if ratio > factor or ratio < 1 / factor:
            return (f"${new:g} is {ratio:.3g}× the ${old:g} it would replace (more than "
                    f"{factor:g}× either way)")
    if before.kind is not after.kind and before.kind.value != "unknown":
        return f"the price kind would change from {before.kind.value} to {after.kind.value}"
    return None


def zero_refused(before: Price, after: Price) -> bool:
    """A $0 price for an offer not marked free: never written, even when accepted."""
    return headline(after) == 0 and not before.free
