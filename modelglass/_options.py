"""Checks of the settings a :class:`~modelglass.Client` is built with.

Each bad value is an :class:`~modelglass.errors.InvalidRequest` naming the argument (its
``field``) and what is allowed, raised when the client is constructed — never an
``AttributeError`` on the first call, and never a NaN that silently switches a limit off.

>>> check_client_options(timeout_s=-1)
Traceback (most recent call last):
...
modelglass.errors.InvalidRequest: Client(timeout_s=-1): must be a finite number of seconds > 0
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from .catalog._price import check_estimate_inputs
from .errors import InvalidRequest

__all__ = ["check_client_options", "check_estimate_inputs", "check_provider_names",
           "known_providers"]


def known_providers() -> tuple[str, ...]:
    """The provider ids modelglass knows (``openai``, ``fal``, ``replicate``, ``local``)."""
    from .providers import PROVIDER_CLASSES

    return tuple(PROVIDER_CLASSES)


def check_provider_names(names: Iterable[Any], *, field: str) -> list[str]:
    """``names`` as a list, each a known provider id (exact spelling), else
    :class:`InvalidRequest` naming ``field`` and the valid ids."""
    if isinstance(names, (str, bytes)):
        raise InvalidRequest(f"{field} must be a list of provider names, not the single string "
                             f"{names!r}; e.g. [{', '.join(map(repr, known_providers()[:2]))}]",
                             field=field)
    try:
        out = list(names)
    except TypeError:
        raise InvalidRequest(f"{field} must be a list of provider names, got "
                             f"{type(names).__name__}", field=field) from None
    valid = known_providers()
    bad = [n for n in out if n not in valid]
    if bad:
        hint = ""
        lowered = {v.lower(): v for v in valid}
        near = [lowered[str(b).strip().lower()] for b in bad
                if isinstance(b, str) and str(b).strip().lower() in lowered]
        if near:
            hint = f" (names are lower case: {', '.join(map(repr, near))})"
        else:
            import difflib

            close = [m for b in bad if isinstance(b, str)
                     for m in difflib.get_close_matches(b.strip(), valid, n=1)]
            if close:
                hint = f" (did you mean {', '.join(map(repr, close))}?)"
        raise InvalidRequest(f"{field} names unknown provider(s) {', '.join(map(repr, bad))}"
                             f"{hint}; the providers are {', '.join(valid)}", field=field)
    return out


def _seconds(name: str, value: Any, *, zero_ok: bool = False) -> None:
    ok = (not isinstance(value, bool) and isinstance(value, (int, float))
          and math.isfinite(value) and (value >= 0 if zero_ok else value > 0))
    if not ok:
        what = ">= 0" if zero_ok else "> 0"
        raise InvalidRequest(f"Client({name}={value!r}): must be a finite number of seconds "
                             f"{what}", field=name)


def check_client_options(*, providers: Mapping[str, Any] | None = None,
                         available: Iterable[str] | None = None,
                         api_keys: Mapping[str, Any] | None = None, budget: Any = None,
                         timeout_s: float = 120.0, deadline_s: float = 600.0,
                         max_retries: int = 3, retry_after_cap_s: float = 30.0,
                         retry_backoff_s: float = 0.5, max_download_bytes: int = 64 << 20,
                         allow_double_payment: bool = False, **_: Any) -> None:
    """Raise :class:`InvalidRequest` for the first bad ``Client`` argument (see module doc)."""
    from .providers.base import Provider

    if providers is not None:
        if not isinstance(providers, Mapping):
            raise InvalidRequest(f"Client(providers=...) must map provider names to provider "
                                 f"objects, got {type(providers).__name__}", field="providers")
        for name, prov in providers.items():
            if not isinstance(prov, Provider):
                raise InvalidRequest(
                    f"Client(providers={{{name!r}: {type(prov).__name__}}}): each value must be "
                    f"a provider object, e.g. FalProvider(api_key=...); to pass a key, use "
                    f"api_keys={{{name!r}: '...'}}", field=f"providers.{name}")
    if available is not None:
        check_provider_names(available, field="available")
    if api_keys is not None:
        if not isinstance(api_keys, Mapping):
            raise InvalidRequest("Client(api_keys=...) must map provider names to keys",
                                 field="api_keys")
        check_provider_names(list(api_keys), field="api_keys")
        for name, key in api_keys.items():
            if not isinstance(key, str) or not key:
                raise InvalidRequest(f"Client(api_keys[{name!r}]) must be a non-empty string",
                                     field=f"api_keys.{name}")
    if budget is not None and not (hasattr(budget, "reserve") and hasattr(budget, "settle")):
        raise InvalidRequest(f"Client(budget=...) must be a modelglass.Budget (e.g. "
                             f"Budget(5.0)), got {type(budget).__name__}", field="budget")
    _seconds("timeout_s", timeout_s)
    _seconds("deadline_s", deadline_s)
    _seconds("retry_after_cap_s", retry_after_cap_s, zero_ok=True)
    _seconds("retry_backoff_s", retry_backoff_s, zero_ok=True)
    if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
        raise InvalidRequest(f"Client(max_retries={max_retries!r}): must be a whole number >= 0",
                             field="max_retries")
    if isinstance(max_download_bytes, bool) or not isinstance(max_download_bytes, int) \
            or max_download_bytes <= 0:
        raise InvalidRequest(f"Client(max_download_bytes={max_download_bytes!r}): must be a whole "
                             f"number of bytes > 0", field="max_download_bytes")
    if not isinstance(allow_double_payment, bool):
        raise InvalidRequest(f"Client(allow_double_payment={allow_double_payment!r}): must be "
                             f"True or False", field="allow_double_payment")
