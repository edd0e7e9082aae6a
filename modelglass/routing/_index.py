"""Per-catalog routing caches: each offer's facts flattened once, each model's quality per axis
and signals, and the memo of rankings per request shape (see :func:`~._route.route`)."""

from __future__ import annotations

import dataclasses
import threading
import weakref
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from ._policy import Policy
from ._scoring import ModelQuality, model_quality, signal_weights
from ._signals import Signals

if TYPE_CHECKING:
    from ..catalog import Catalog, OfferView, QualityAxis
    from ._bound import Ranking

__all__ = ["clear_cache"]

#: Rows kept in the memo per catalog, summed over entries (bounds memory on huge catalogs).
_MEMO_ROWS = 200_000


class _Facts:
    """What routing reads of one offer, flattened once per catalog (no pydantic in the loop)."""

    __slots__ = (
        "commercial",
        "key",
        "licence_id",
        "max_mp",
        "model_id",
        "open_weights",
        "provider",
        "replacement",
        "shutdown_on",
        "status",
    )

    def __init__(self, view: OfferView) -> None:
        m = view.model
        self.key = view.key
        self.model_id = view.model_id
        self.provider = view.provider
        self.status = m.lifecycle.status
        self.shutdown_on = m.lifecycle.shutdown_on
        self.replacement = m.lifecycle.replacement
        self.commercial = m.licence.commercial_use
        self.open_weights = m.licence.open_weights
        self.licence_id = m.licence.id
        self.max_mp = view.geometry.max_mp()


class _Index:
    """Per-catalog caches: offer facts, model quality per axis/signals, and the ranking memo."""

    def __init__(self, catalog: Catalog) -> None:
        self.views = catalog.offers(include_retired=True)
        # overlay hook (catalog helper): offers a catalog overlay disabled, named in rejections
        self.disabled = dict(getattr(getattr(catalog, "overlay", None), "disabled", {}) or {})
        self.facts = [_Facts(v) for v in self.views]
        self.providers = frozenset(f.provider for f in self.facts)
        limits = [v.controls.max_prompt_chars for v in self.views if v.controls.max_prompt_chars]
        self.min_prompt_limit = min(limits) if limits else None
        #: Whether some offer is priced by tokens: then its cost depends on the prompt's length.
        self.token_priced = any(v.offer.price.kind.value == "per_token" for v in self.views)
        self.quality: dict[tuple[Any, ...], tuple[dict[str, float], dict[str, ModelQuality]]] = {}
        # shape -> (its ranking, the providers it was planned with: kept so their ids in the
        # key cannot be reused while cached)
        self.memo: OrderedDict[tuple[Any, ...], tuple[Ranking, Any]] = OrderedDict()
        self.memo_limit = max(4, _MEMO_ROWS // max(1, len(self.views)))
        self.lock = threading.Lock()
        #: Each offer's price floor (see :func:`~._bound.price_floor`), filled on first use.
        self.floors: list[float | None] | None = None
        #: Bound-first orders per screening key (see :func:`~._bound.bound_first`).
        self.orders: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
        #: Planner outputs per plan shape (a request shape less its budget, which planning does
        #: not read): offer index -> its call or the planner's refusal; with the providers, as
        #: in ``memo``. Shapes that differ only in budget share them (see :func:`shared_plans`).
        self.plans: OrderedDict[tuple[Any, ...], tuple[dict[int, Any], Any]] = OrderedDict()
        #: Unfitted estimates per plan shape less its ``cfg`` (which they do not read): offer
        #: index -> estimate or None (see :func:`~._bound.bound_first`).
        self.estimates: OrderedDict[tuple[Any, ...], tuple[dict[int, Any], Any]] = OrderedDict()

    def shared_plans(self, shape: tuple[Any, ...], providers: Any,
                     store: OrderedDict[tuple[Any, ...], tuple[dict[int, Any], Any]] | None = None
                     ) -> dict[int, Any]:
        """The planner outputs kept for ``shape`` (a new empty dict when none are); ``store``:
        another kept set (``estimates``) instead of ``plans``."""
        kept = self.plans if store is None else store
        with self.lock:
            hit = kept.get(shape)
            if hit is not None:
                kept.move_to_end(shape)
                return hit[0]
            out: dict[int, Any] = {}
            kept[shape] = (out, providers)
            while len(kept) > self.memo_limit:
                kept.popitem(last=False)
            return out

    def model_quality(self, catalog: Catalog, name: str, axis: QualityAxis, signals: Signals,
                      policy: Policy) -> tuple[dict[str, float], dict[str, ModelQuality]]:
        key = (name, signals.key, policy)
        hit = self.quality.get(key)
        if hit is None:
            weights = signal_weights(axis, signals, policy.scoring)
            table = {mid: model_quality(catalog.scores(mid), axis, weights, signals,
                                        policy.scoring)
                     for mid in catalog.models}
            hit = self.quality[key] = (weights, table)
        return hit

    def views_for(self, catalog: Catalog, policy: Policy, name: str,
                  axis: QualityAxis) -> tuple[list[OfferView], str]:
        """The offers as the planner should see them under ``policy`` for axis ``name``, and
        the quality name to plan with: a policy axis plans as the shipped axis it extends (its
        price tier) with the policy's target size and dpi."""
        if name not in policy.spec.axes:
            return self.views, name
        key = ("views", policy, name)
        hit = self.quality.get(key)
        if hit is None:
            root = policy.root_axis(name, catalog)
            axes = {**catalog.quality_axes, root: axis, name: axis}
            views = [dataclasses.replace(v, quality_axes=axes) for v in self.views]
            hit = self.quality[key] = (views, root)  # type: ignore[assignment]
        return hit  # type: ignore[return-value]


_INDEXES: weakref.WeakKeyDictionary[Catalog, _Index] = weakref.WeakKeyDictionary()
_INDEX_LOCK = threading.Lock()


def _index(catalog: Catalog) -> _Index:
    idx = _INDEXES.get(catalog)
    if idx is None:
        with _INDEX_LOCK:
            idx = _INDEXES.get(catalog)
            if idx is None:
                idx = _INDEXES[catalog] = _Index(catalog)
    return idx


def clear_cache(catalog: Catalog | None = None) -> None:
    """Forget the routing caches (of one catalog, or all): the next route() plans every offer."""
    if catalog is None:
        _INDEXES.clear()
    else:
        _INDEXES.pop(catalog, None)

