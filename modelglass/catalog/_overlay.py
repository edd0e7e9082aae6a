"""Overlays: the user's YAML layered over the shipped catalog.

An overlay changes what the user knows better than the shipped files: negotiated or synced prices,
other endpoints, models or offers to leave alone, and private deployments (the user's own fal app
or Replicate deployment) added as extra offers of a catalog model. The shipped files are never
written; ``modelglass catalog sync`` writes an overlay with ``source: sync``.

Format (every key optional)::

    as_of: 2026-11-29            # the date of every price below that does not give its own
    source: negotiated 2026-11   # where the figures come from (free text; sync writes "sync")
    offers:                      # patches of existing offers, by key
      flux-dev@fal:
        price: {kind: per_megapixel, usd_per_megapixel: 0.02, round_up_megapixels: true}
        endpoint: fal-ai/flux/dev
        latency: {p50_s: 3.1}
      sd-3.5-large@fal: {disabled: true, reason: "not allowed by our legal team"}
    models:
      imagen-4: {disabled: true, reason: shut down}   # every offer of the model
    deployments:                 # extra offers: a model of the catalog on your own endpoint
      - model: flux-dev
        provider: fal
        id: flux-dev@my-fal-app
        endpoint: my-team/flux-dev-app
        price: {kind: gpu_seconds, seconds: 3.0}
    seen:                        # written by sync: endpoints the provider lists, not described
      fal: [fal-ai/some-new-model]

Overlays apply in order; a later one wins. Problems are reported as ``file:line: field: message``
like the shipped catalog's. Disabled offers are not routed; ``seen`` endpoints never are.
"""

from __future__ import annotations

import datetime as dt
import difflib
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError

from .. import _clock
from ._load import _check_merged, _Sources
from ._schema import Controls, Geometry, Latency, Model, Offer, Price, _Strict
from ._yaml import _display, _Doc, _friendly, _parse, _Problems, _validate

log = logging.getLogger("modelglass")

__all__ = ["OVERLAY_ENV", "Overlay", "OverlayChange", "OverlayReport", "apply_overlays",
           "default_overlay_path"]

#: Environment variable naming the user's overlay file ("" or "none": no overlay).
OVERLAY_ENV = "MODELGLASS_CATALOG_OVERLAY"


def default_overlay_path() -> Path | None:
    """The user's overlay: ``$MODELGLASS_CATALOG_OVERLAY``, else ``overlay.yaml`` in the
    platformdirs user config directory (``~/.config/modelglass/overlay.yaml`` on Linux).

    Returns the path whether or not the file exists (``catalog sync`` writes it); None when the
    environment variable is set to ``""`` or ``none``.
    """
    env = os.environ.get(OVERLAY_ENV)
    if env is not None:
        return None if env.strip().lower() in ("", "none", "0") else Path(env).expanduser()
    from platformdirs import user_config_dir

    return Path(user_config_dir("modelglass")) / "overlay.yaml"


_WARNED: set[str] = set()


def overlay_missing(path: Path | None) -> None:
    """Say (once per path, as a warning on the ``modelglass`` logger) that the overlay file
    ``$MODELGLASS_CATALOG_OVERLAY`` names does not exist, so none of its prices or disables
    apply. The user-config default overlay may well not exist: that is silent."""
    env = os.environ.get(OVERLAY_ENV)
    if path is None or env is None or str(path) in _WARNED:
        return
    _WARNED.add(str(path))
    logging.getLogger("modelglass").warning(
        "%s=%s: no such file, so its prices, endpoints and disabled offers do not apply (the "
        "shipped catalog is used alone). Fix the path, or unset the variable; `modelglass "
        "catalog sync` writes the file there.", OVERLAY_ENV, env)


class OfferPatch(_Strict):
    """Changes to one existing offer. ``disabled: true`` takes it out of routing."""

    price: Price | None = None
    as_of: dt.date | None = None
    source: str | None = None
    endpoint: str | None = None
    latency: Latency | None = None
    controls: Controls | None = None
    geometry: Geometry | None = None
    wire: dict[str, str] | None = None
    defaults: dict[str, Any] | None = None
    notes: str | None = None
    disabled: bool = False
    reason: str | None = None
    #: the date a sync first found the offer gone (written by ``catalog sync``)
    disabled_on: dt.date | None = None


class ModelPatch(_Strict):
    """``disabled: true`` takes every offer of the model out of routing."""

    disabled: bool = False
    reason: str | None = None


class Overlay(_Strict):
    """One overlay file (see the module docstring for the format)."""

    as_of: dt.date | None = None
    source: str | None = None
    note: str | None = None
    offers: dict[str, OfferPatch] = Field(default_factory=dict)
    models: dict[str, ModelPatch] = Field(default_factory=dict)
    deployments: list[dict[str, Any]] = Field(default_factory=list)
    seen: dict[str, list[str]] = Field(default_factory=dict)


@dataclass(frozen=True)
class OverlayChange:
    """One thing an overlay changed: ``what`` is ``price``, ``endpoint``, ``disabled``, ``added``,
    …; ``before`` / ``after`` are plain values (prices as dicts)."""

    file: str
    line: int
    offer: str
    what: str
    before: Any = None
    after: Any = None


@dataclass
class OverlayReport:
    """What the overlays did to the shipped catalog (``catalog diff`` prints it)."""

    files: list[str] = field(default_factory=list)
    changes: list[OverlayChange] = field(default_factory=list)
    #: offer key → why it is not routed
    disabled: dict[str, str] = field(default_factory=dict)
    #: provider → endpoints the provider lists that the catalog does not describe (not routed)
    seen: dict[str, list[str]] = field(default_factory=dict)


_PATCH_FIELDS = ("price", "as_of", "source", "endpoint", "latency", "wire", "defaults", "notes")


def _plain(v: Any) -> Any:
    if hasattr(v, "model_dump"):
        return v.model_dump(mode="json", exclude_none=True, exclude_defaults=True)
    return v.isoformat() if isinstance(v, dt.date) else v


def apply_overlays(src: _Sources, paths: Iterable[str | Path], problems: _Problems,
                   providers: Iterable[str]) -> OverlayReport:
    """Layer each overlay file over ``src`` (in place), in order. Problems go to ``problems``."""
    report = OverlayReport()
    for p in paths:
        path = Path(p).expanduser()
        if not path.is_file():
            problems.append(f"{_display(path)}:1: overlay file not found; check the path "
                            f"(or {OVERLAY_ENV})")
            continue
        doc = _parse(path, problems)
        if doc is None:
            continue
        report.files.append(doc.file)
        if doc.data is None:
            continue
        if not isinstance(doc.data, dict):
            problems.add(doc, (), "an overlay is a mapping with offers:, models:, deployments:")
            continue
        _apply_one(src, doc, report, problems, set(providers))
    return report


def _find_offer(src: _Sources, key: str) -> tuple[str, int] | None:
    for mid, (m, _) in src.models.items():
        for i, o in enumerate(m.offers):
            if o.key(mid) == key:
                return mid, i
    return None


def _all_keys(src: _Sources) -> list[str]:
    return [o.key(mid) for mid, (m, _) in src.models.items() for o in m.offers]


def _apply_one(src: _Sources, doc: _Doc, report: OverlayReport, problems: _Problems,
               providers: set[str]) -> None:
    """Apply one parsed overlay: offer patches, whole models, private deployments, seen endpoints."""
    data = {k: v for k, v in doc.data.items() if not str(k).startswith("_")}
    head = _validate(Overlay, {k: v for k, v in data.items()
                               if k not in ("offers", "models", "deployments")}, doc, (), problems)
    if head is None:
        return
    today = _clock.today()

    def future(when: dt.date | None, path: tuple[Any, ...]) -> bool:
        """A date later than today is refused: it would keep a price fresh for ever."""
        if when is None or when <= today:
            return False
        problems.add(doc, path, f"as_of {when} is later than today ({today}); fix the date "
                     f"(or the clock: {_clock.ENV})")
        return True

    if future(head.as_of, ("as_of",)):
        return
    for section, kind in (("offers", dict), ("models", dict), ("deployments", list)):
        if section in data and not isinstance(data[section], kind):
            problems.add(doc, (section,), "must be a " + ("mapping" if kind is dict else "list"))
            data[section] = kind()

    for key, body in (data.get("offers") or {}).items():
        _patch_offer(src, doc, head, key, body, report, problems, future)
    for mid, body in (data.get("models") or {}).items():
        _patch_model(src, doc, mid, body, report, problems)
    for i, body in enumerate(data.get("deployments") or []):
        _add_deployment(src, doc, head, i, body, report, problems, providers, future)
    _note_seen(src, head, report)


_Future = Callable[[dt.date | None, tuple[Any, ...]], bool]


def _patch_offer(src: _Sources, doc: _Doc, head: Overlay, key: str, body: Any,
                 report: OverlayReport, problems: _Problems, future: _Future) -> None:
    """Patch one existing offer (``offers: {key: ...}``), recording each change."""
    path = ("offers", key)
    patch = _validate(OfferPatch, body, doc, path, problems)
    if patch is None:
        return
    where = _find_offer(src, key)
    if where is None and (patch.source or head.source) == "sync":
        # Written by an earlier `catalog sync` for an offer this catalog no longer has (after
        # an upgrade): stale, not the user's mistake. The next sync drops it.
        log.warning("%s:%d: %s is not in the catalog any more; ignoring its synced entry "
                    "(run `modelglass catalog sync` to refresh)", doc.file, doc.line(path), key)
        return
    if where is None:
        close = difflib.get_close_matches(key, _all_keys(src), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else \
            "; add a private endpoint under deployments:"
        problems.add(doc, path, f"no offer {key!r} in the catalog{hint}")
        return
    if future(patch.as_of, path + ("as_of",)):
        return
    mid, i = where
    model, mdoc = src.models[mid]
    offer = model.offers[i]
    line = doc.line(path)
    changed = patch.model_dump(exclude_unset=True)
    if patch.disabled:
        report.disabled[key] = patch.reason or f"disabled by {doc.file}:{line}"
        report.changes.append(OverlayChange(doc.file, line, key, "disabled", False, True))
    elif "disabled" in changed and report.disabled.pop(key, None) is not None:
        # `disabled: false` in a later overlay re-enables what an earlier one disabled
        report.changes.append(OverlayChange(doc.file, line, key, "disabled", True, False))
    if "price" in changed and patch.as_of is None and head.as_of is None:
        problems.add(doc, path + ("price",), "a changed price needs its date: give as_of "
                     "here or at the top of the overlay")
        return
    update: dict[str, Any] = {}
    for name in _PATCH_FIELDS:
        if name in changed:
            update[name] = getattr(patch, name)
    if "price" in changed:
        update.setdefault("as_of", head.as_of)
        update.setdefault("source", head.source or f"overlay {doc.file}")
    if patch.controls is not None:
        update["controls"] = (offer.controls or Controls()).merged(patch.controls)
    if patch.geometry is not None:
        update["geometry"] = (offer.geometry or Geometry()).merged(patch.geometry)
    if not update:
        return
    try:
        new = Offer.model_validate({**offer.model_dump(), **update})
    except ValidationError as exc:
        for err in exc.errors(include_url=False):
            problems.add(doc, path + tuple(err["loc"]), _friendly(dict(err)))
        return
    for name, value in update.items():
        before = getattr(offer, name)
        if _plain(before) != _plain(value):
            report.changes.append(OverlayChange(doc.file, doc.line(path + (name,)), key, name,
                                                _plain(before), _plain(value)))
    offers = list(model.offers)
    offers[i] = new
    src.models[mid] = (model.model_copy(update={"offers": offers}), mdoc)


def _patch_model(src: _Sources, doc: _Doc, mid: str, body: Any, report: OverlayReport,
                 problems: _Problems) -> None:
    """Disable (or re-enable) every offer of one model (``models: {id: ...}``)."""
    path = ("models", mid)
    patch = _validate(ModelPatch, body, doc, path, problems)
    if patch is None:
        return
    if mid not in src.models:
        close = difflib.get_close_matches(mid, src.models, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        problems.add(doc, path, f"no model {mid!r} in the catalog{hint}")
        return
    line = doc.line(path)
    if not patch.disabled and "disabled" in patch.model_fields_set:
        for o in src.models[mid][0].offers:
            if report.disabled.pop(o.key(mid), None) is not None:
                report.changes.append(OverlayChange(doc.file, line, o.key(mid), "disabled",
                                                    True, False))
    if patch.disabled:
        for o in src.models[mid][0].offers:
            report.disabled[o.key(mid)] = patch.reason or f"model disabled by {doc.file}:{line}"
            report.changes.append(OverlayChange(doc.file, line, o.key(mid), "disabled",
                                                False, True))


def _add_deployment(src: _Sources, doc: _Doc, head: Overlay, i: int, body: Any,
                    report: OverlayReport, problems: _Problems, providers: set[str],
                    future: _Future) -> None:
    """Add a private deployment (``deployments: [...]``) as an extra offer of a catalog model."""
    path = ("deployments", i)
    if not isinstance(body, dict):
        problems.add(doc, path, "a deployment is a mapping (model, provider, endpoint, price)")
        return
    dep_model = body.get("model")
    if not isinstance(dep_model, str) or dep_model not in src.models:
        close = difflib.get_close_matches(str(dep_model), src.models, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        problems.add(doc, path + ("model",), f"{dep_model!r} is not a model in the catalog{hint}; "
                     "a deployment adds an offer to an existing model")
        return
    raw = {k: v for k, v in body.items() if k != "model"}
    raw.setdefault("as_of", head.as_of)
    raw.setdefault("source", head.source or f"overlay {doc.file}")
    if raw["as_of"] is None:
        problems.add(doc, path, "a deployment needs as_of (here or at the top of the overlay)")
        return
    if isinstance(raw["as_of"], dt.date) and future(raw["as_of"], path + ("as_of",)):
        return
    offer = _validate(Offer, raw, doc, path, problems)
    if offer is None:
        return
    key = offer.key(dep_model)
    if offer.provider not in providers:
        problems.add(doc, path + ("provider",), f"unknown provider {offer.provider!r}; one of "
                     f"{', '.join(sorted(providers))}")
        return
    if _find_offer(src, key) is not None:
        problems.add(doc, path, f"offer {key!r} already exists; give the deployment its own "
                     "`id:` (e.g. flux-dev@my-app), or patch the offer under offers:")
        return
    model, mdoc = src.models[dep_model]
    _check_merged(model, offer, doc, path, problems)
    src.models[dep_model] = (model.model_copy(update={"offers": [*model.offers, offer]}), mdoc)
    src.offer_index.setdefault(dep_model, []).append(len(model.offers))
    report.changes.append(OverlayChange(doc.file, doc.line(path), key, "added", None,
                                        _plain(offer)))


def _note_seen(src: _Sources, head: Overlay, report: OverlayReport) -> None:
    """Endpoints a provider lists that no offer describes (``seen:``), kept for the report."""
    described = {(o.provider, o.endpoint) for _, (m, _) in src.models.items() for o in m.offers}
    for provider, endpoints in head.seen.items():
        fresh = [e for e in endpoints if (provider, e) not in described]
        if fresh:
            merged = report.seen.setdefault(provider, [])
            merged.extend(e for e in fresh if e not in merged)


def disabled_models(models: dict[str, Model], report: OverlayReport) -> set[str]:
    """Model ids whose every offer is disabled."""
    return {mid for mid, m in models.items()
            if m.offers and all(o.key(mid) in report.disabled for o in m.offers)}
