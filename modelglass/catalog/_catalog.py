"""The :class:`Catalog`: models, offers and quality axes, loaded and cross-checked, with the
queries every layer above asks of it (offers, scores, cost estimates, comparisons).

The catalog is the bottom layer (see docs/architecture.md): it imports nothing that plans, routes
or calls a provider. Three public methods need those layers (:meth:`Catalog.query` plans a probe,
:meth:`Catalog.plot` and :meth:`Catalog.write_html` draw what the router considers); their
implementations live in :mod:`modelglass.catalog_tools`, which registers them here with
:func:`register_tool` when ``modelglass`` is imported (dependency inversion, not an import).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from ..errors import CatalogError, InvalidRequest
from ._load import default_catalog_dir, read_sources
from ._overlay import OverlayReport, apply_overlays, default_overlay_path, overlay_missing
from ._price import CostEstimate
from ._schema import AXES, Model, PriceKind, QualityAxis, Settings, Status
from ._scores import Score, compute_catalog_scores
from ._view import OfferView
from ._yaml import _Problems

if TYPE_CHECKING:
    from ..catalog_tools._query import OfferRow

__all__ = ["Catalog", "Comparison", "load_catalog", "register_tool"]

#: Catalog methods implemented above the catalog (``query``, ``plot``, ``write_html``), by name.
_TOOLS: dict[str, Callable[..., Any]] = {}


def register_tool(name: str, implementation: Callable[..., Any]) -> None:
    """Install the implementation of a catalog method that needs the layers above the catalog
    (called by :mod:`modelglass.catalog_tools` on ``import modelglass``)."""
    _TOOLS[name] = implementation


def _tool(name: str) -> Callable[..., Any]:
    try:
        return _TOOLS[name]
    except KeyError:  # pragma: no cover - importing modelglass.catalog imports modelglass first
        raise RuntimeError(f"Catalog.{name} is implemented in modelglass.catalog_tools, which "
                           "registers it on `import modelglass`; import modelglass first") from None


def load_catalog(path: Path, overlays: Iterable[str | Path] | None = None) -> Catalog:
    """Load a catalog directory, or one models YAML file layered over the default catalog, then
    each overlay (see ``_overlay.py``) in order.

    Every problem in every file is collected first; then one :class:`CatalogError` lists them
    all as ``file:line: field.path: message``.

    >>> from modelglass.catalog import default_catalog_dir
    >>> load_catalog(default_catalog_dir())  # doctest: +ELLIPSIS
    Catalog(... models, ... offers)
    """
    problems = _Problems()
    src = read_sources(Path(path), problems)
    if isinstance(overlays, (str, os.PathLike)):
        overlays = [overlays]  # one file given bare, not a list of one-character paths
    settings_ = src.settings[0] if src.settings else Settings()
    report = apply_overlays(src, overlays or (), problems, settings_.providers)
    if problems:
        n = len(problems)
        raise CatalogError(f"catalog has {n} problem{'s' if n != 1 else ''}", problems=problems)
    assert src.settings is not None
    axes = {name: axis for name, (axis, _) in src.axes.items()}
    models = {mid: m for mid, (m, _) in src.models.items()}
    try:
        return Catalog(src.settings[0], axes, models, sources=src.files, overlay=report)
    except ValidationError as exc:  # pragma: no cover - the cross-checks merge offers first
        raise CatalogError(f"catalog failed to assemble: {exc}") from exc


@dataclass
class Comparison:
    """A side-by-side table of models: axes, controls and cheapest prices."""

    columns: list[str]
    rows: list[dict[str, Any]] = field(default_factory=list)
    axis: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"axis": self.axis, "columns": self.columns, "rows": self.rows}

    def __rich__(self) -> Any:
        from rich.table import Table

        table = Table(title=f"compare{f' on {self.axis}' if self.axis else ''}")
        table.add_column("")
        for c in self.columns:
            table.add_column(c)
        if self.rows:
            for key in self.rows[0]:
                if key == "model":
                    continue
                table.add_row(key, *[_cell(r.get(key)) for r in self.rows])
        return table


def _cell(v: Any) -> str:
    if v is None:
        return "unknown"
    if isinstance(v, float):
        return f"{v:.4g}"
    from rich.markup import escape  # names like "FLUX.1 [dev]" are not markup

    return escape(str(v))


class Catalog:
    """Models, offers and quality axes, loaded and cross-checked.

    Use :meth:`default` for the packaged catalog, :meth:`load` for your own directory (same layout
    as ``catalog/`` in the repository) or a single models YAML file merged over the default.
    """

    def __init__(self, settings: Settings, quality_axes: dict[str, QualityAxis],
                 models: dict[str, Model], sources: list[str] | None = None, *,
                 overlay: OverlayReport | None = None) -> None:
        self.settings = settings
        self.quality_axes = quality_axes
        self.models = models
        self.sources = sources or []
        #: What the overlays changed (``catalog diff``): changes, disabled offers, seen endpoints.
        self.overlay: OverlayReport = overlay or OverlayReport()
        self._scores = compute_catalog_scores(models, settings.formula_version)
        self._views: dict[str, OfferView] = {}
        #: Offers an overlay disabled: known (``catalog show``), never routed.
        self.disabled: dict[str, OfferView] = {}
        for mid, m in models.items():
            for o in m.offers:
                view = OfferView(mid, m, o, m.controls.merged(o.controls),
                                 m.geometry.merged(o.geometry), settings.gpu_hour_usd,
                                 quality_axes)
                if view.key in self.overlay.disabled:
                    self.disabled[view.key] = view
                else:
                    self._views[view.key] = view

    # -- loading ----------------------------------------------------------------------------------
    @classmethod
    def default(cls) -> Catalog:
        """The shipped catalog plus the user's overlay, if any (cached until the overlay changes).

        The overlay is ``$MODELGLASS_CATALOG_OVERLAY``, else ``overlay.yaml`` in the user config
        directory (see :func:`~modelglass.catalog._overlay.default_overlay_path`).
        """
        global _DEFAULT
        overlay = default_overlay_path()
        try:
            stamp: Any = (str(overlay), overlay.stat().st_mtime_ns) if overlay else None
        except OSError:
            overlay_missing(overlay)  # warns when $MODELGLASS_CATALOG_OVERLAY names it
            overlay, stamp = None, None  # no overlay file: the shipped catalog alone
        if _DEFAULT is None or _DEFAULT[0] != stamp:
            _DEFAULT = (stamp, cls.load(default_catalog_dir(),
                                        overlays=[overlay] if overlay else None))
        return _DEFAULT[1]

    @classmethod
    def load(cls, path: str | Path, overlays: Sequence[str | Path] | None = None) -> Catalog:
        """Load a catalog directory (or a models YAML file layered over the shipped catalog),
        then each overlay in order (prices, endpoints, disabled offers, private deployments).

        Raises :class:`CatalogError` listing every problem as ``file:line: field.path: message``.

        >>> cat = Catalog.load("catalog/", overlays=["~/my-prices.yaml"])  # doctest: +SKIP
        """
        return load_catalog(Path(path), overlays=overlays)

    # -- queries ----------------------------------------------------------------------------------
    def offers(self, *, include_retired: bool = True) -> list[OfferView]:
        """Every offer, in catalog order."""
        return [v for v in self._views.values()
                if include_retired or v.model.lifecycle.status_on() is not Status.retired]

    def offer(self, key: str) -> OfferView:
        """One offer by key (``"flux-dev@fal"``)."""
        try:
            return self._views[key]
        except KeyError:
            if key in self.disabled:
                raise CatalogError(f"offer {key!r} is disabled by your catalog overlay "
                                   f"({self.overlay.disabled.get(key, '')}); remove it from "
                                   "the overlay to route it again") from None
            raise CatalogError(f"no offer {key!r}; offers look like 'flux-dev@fal' "
                               f"(see `modelglass catalog list`)") from None

    def offers_for(self, model_id: str, provider: str | None = None) -> list[OfferView]:
        self.model(model_id)
        return [v for v in self._views.values()
                if v.model_id == model_id and (provider is None or v.provider == provider)]

    def model(self, model_id: str) -> Model:
        try:
            return self.models[model_id]
        except KeyError:
            close = [m for m in self.models if model_id.lower() in m or m in model_id.lower()]
            hint = f" Did you mean {', '.join(close[:3])}?" if close else ""
            raise CatalogError(f"unknown model {model_id!r}.{hint} "
                               f"`modelglass catalog list` shows them all.") from None

    def scores(self, model_id: str) -> dict[str, Score]:
        self.model(model_id)
        return self._scores[model_id]

    def score(self, model_id: str, axis: str) -> Score:
        return self.scores(model_id)[axis]

    def quality(self, quality: Any) -> QualityAxis:
        """The quality axis named ``quality``; :class:`InvalidRequest` (field ``quality``) naming
        the valid ones when there is none."""
        key = str(getattr(quality, "value", quality))
        try:
            return self.quality_axes[key]
        except KeyError:  # the caller's name, not the catalog's fault
            import difflib

            close = difflib.get_close_matches(key, list(self.quality_axes), n=1)
            raise InvalidRequest(f"unknown quality axis {key!r}"
                                 + (f"; did you mean {close[0]!r}?" if close else "")
                                 + f" (valid: {', '.join(self.quality_axes)})",
                                 field="quality") from None

    @property
    def providers(self) -> list[str]:
        return sorted({v.provider for v in self._views.values()} | set(self.settings.providers))

    def estimate_cost(self, model_id: str, provider: str | None = None, width: int = 1024,
                      height: int = 1024, n: int = 1, *, steps: int | None = None,
                      quality: str | None = None, prompt: str | None = None) -> CostEstimate:
        """The cheapest known cost for ``n`` images of this model, as a :class:`CostEstimate`.

        With ``provider``, that provider's offers; without, the hosted offers only: a local offer
        costs GPU time only where a GPU and the weights are present, so it is priced only when
        asked for (``provider="local"``). ``estimate.offer`` names the offer priced; ``usd`` is
        None when no matching offer has a known price (unknown is never $0).

        >>> Catalog.default().estimate_cost("flux-dev", provider="fal").offer  # doctest: +SKIP
        'flux-dev@fal'
        """
        views = self.offers_for(model_id, provider)
        if not views:
            raise CatalogError(f"model {model_id!r} has no offer on provider {provider!r}; "
                               f"it is offered on {', '.join(v.provider for v in self.offers_for(model_id)) or 'no provider'}")
        # Offers priced in GPU time run on this machine: priced only when asked for by provider.
        local = ([v for v in views if v.offer.price.kind == PriceKind.gpu_seconds]
                 if provider is None else [])
        views = [v for v in views if v not in local]
        ests = [v.estimate_cost(width, height, n, steps=steps, quality=quality, prompt=prompt)
                for v in views]
        known = [e for e in ests if e.usd is not None]
        if known:
            return min(known, key=lambda e: e.usd or 0.0)
        if local and not views:
            return CostEstimate(None, None, f"{model_id} is offered only locally "
                                f"({', '.join(v.key for v in local)}); its cost is GPU time where "
                                "a GPU and the weights are present: pass provider='local'")
        return CostEstimate(None, None, "no offer of " + model_id + " has a known price ("
                            + "; ".join(f"{e.offer}: {e.basis}" for e in ests) + ")")

    def cheapest(self, model_id: str, width: int = 1024, height: int = 1024) -> tuple[OfferView, CostEstimate] | None:
        best: tuple[OfferView, CostEstimate] | None = None
        for v in self.offers_for(model_id):
            est = v.estimate_cost(width, height, 1)
            if est.usd is not None and (best is None or est.usd < (best[1].usd or math.inf)):
                best = (v, est)
        return best

    def query(self, *, axis: str | None = None, supports: Any = None, where: Any = None,
              provider: Any = None, licence: str | None = None, commercial: bool | None = None,
              lifecycle: Any = None, sort: str | None = "cost", size: str | None = None,
              include_ineligible: bool = False) -> list[OfferRow]:
        """Offers that pass every filter, sorted; each an :class:`OfferRow` with numbers.

        ``axis``: keep the offers the router would consider on this quality axis, with their
        weighted quality; ``supports``: controls the offer really sends (judged by planning a
        probe on it: ``negative_prompt``, ``cfg``, ``steps``, ``seed``, ``sampler``);
        ``where``: ``{"text_rendering": (">=", 8)}`` or ``"text_rendering>=8"`` (an unknown score
        never passes); ``provider``, ``licence`` (id), ``commercial`` (True: licensed for it),
        ``lifecycle`` (``active``/``deprecated``/``retired``); ``sort``: ``"cost"`` per image at
        ``size`` (the axis's target size, else 1024²; unknown prices last), ``"quality"`` (needs
        an axis) or a score name.

        >>> cat.query(axis="hero", supports=["negative_prompt"],
        ...           where={"text_rendering": (">=", 8)}, sort="cost")     # doctest: +SKIP
        """
        return _tool("query")(self, axis=axis, supports=supports, where=where, provider=provider,
                     licence=licence, commercial=commercial, lifecycle=lifecycle, sort=sort,
                     size=size, include_ineligible=include_ineligible)

    def compare(self, model_ids: list[str], axis: str | None = None) -> Comparison:
        """A side-by-side table of axes, controls and cheapest 1024² price.

        With ``axis`` (a quality axis), adds each model's weighted quality on that axis.
        """
        comp = Comparison(columns=list(model_ids), axis=axis)
        qa = self.quality(axis) if axis else None
        for mid in model_ids:
            m = self.model(mid)
            sc = self.scores(mid)
            row: dict[str, Any] = {"model": mid, "name": m.name, "status": m.lifecycle.status_on().value}
            for ax in AXES:
                row[ax] = str(sc[ax])
            if qa is not None:
                num = 0.0
                for a, w in qa.weights.items():
                    v = sc[a].value
                    num += w * (v if v is not None else qa.unknown_score)
                row[f"{axis} quality"] = round(num / sum(qa.weights.values()), 2)
            c = m.controls
            row["negative prompt"] = c.negative_prompt or "unknown"
            row["guidance"] = c.guidance.kind.value if c.guidance else "unknown"
            row["steps"] = (f"{c.steps.min:g}-{c.steps.max:g}" if c.steps and c.steps.min is not None
                            and c.steps.max is not None else "n/a")
            row["seed"] = {True: "yes", False: "no", None: "unknown"}[c.seed]
            row["max MP"] = m.geometry.max_mp()
            row["commercial use"] = {True: "yes", False: "no", None: "unverified"}[m.licence.commercial_use]
            best = self.cheapest(mid)
            row["cheapest 1024²"] = f"${best[1].usd:.4f} ({best[0].provider})" if best else "unknown"
            comp.rows.append(row)
        return comp

    def plot(self, axis: str, out: str | Path, *, size: str | None = None,
             provider: str | None = None, title: str | None = None) -> Path:
        """Draw estimated cost per image (log) against quality on ``axis`` for every offer the
        router considers, the Pareto front circled, to ``out`` (``.png`` or ``.svg``; needs
        matplotlib). Returns the path.

        >>> mg.Catalog.default().plot("hero", "hero.png")          # doctest: +SKIP
        """
        return _tool("plot")(self, axis, out, size=size, provider=provider, title=title)

    def write_html(self, path: str | Path) -> Path:
        """Write the whole catalog as one self-contained HTML page (sortable, filterable tables,
        evidence, sources, lifecycle warnings) to ``path``; returns the path."""
        return _tool("write_html")(self, path)

    def __repr__(self) -> str:
        return f"Catalog({len(self.models)} models, {len(self._views)} offers)"


_DEFAULT: tuple[Any, Catalog] | None = None
