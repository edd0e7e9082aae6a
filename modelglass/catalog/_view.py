"""An offer resolved against its model (:class:`OfferView`): the controls and geometry that really
apply, its price's age, and what ``n`` images would cost on it."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from functools import cached_property

from .. import _clock
from ._price import CostEstimate, check_estimate_inputs, estimate_price
from ._schema import Controls, Geometry, Model, Offer, QualityAxis, Status

__all__ = ["STALE_AFTER_DAYS", "OfferNamed", "OfferView"]


#: A price whose ``as_of`` is older than this many days is flagged stale.
STALE_AFTER_DAYS = 90


@dataclass(frozen=True)
class OfferView:
    """An offer resolved against its model: the controls and geometry that really apply."""

    model_id: str
    model: Model
    offer: Offer
    controls: Controls
    geometry: Geometry
    gpu_hour_usd: float = 2.0
    #: The catalog's quality axes, so a plan can find the axis's target size without the catalog.
    quality_axes: dict[str, QualityAxis] = field(default_factory=dict, repr=False, compare=False)

    def __repr__(self) -> str:
        # The model and offer behind a view are kilobytes of YAML: name the offer, not all of it.
        return f"OfferView({self.key!r}, {self.offer.endpoint!r}, {self.status.value})"

    @cached_property
    def key(self) -> str:  # read for every offer of every routing: built once per view
        return self.offer.key(self.model_id)

    @property
    def provider(self) -> str:
        return self.offer.provider

    @property
    def endpoint(self) -> str:
        return self.offer.endpoint

    @property
    def runs_here(self) -> bool:
        """True when this offer's weights run in this process (see :attr:`Offer.runs_here`)."""
        return self.offer.runs_here

    @property
    def status(self) -> Status:
        """The model's lifecycle status today (a deprecated model past shutdown is retired)."""
        return self.model.lifecycle.status_on()

    def price_age_days(self, today: dt.date | None = None) -> int:
        """Days since this offer's price was checked (``as_of``), as of ``today`` (default: now)."""
        return (_clock.today(today) - self.offer.as_of).days

    @property
    def price_stale(self) -> bool:
        """True when the price is older than :data:`STALE_AFTER_DAYS` (90) days today: shown
        flagged in ``explain()``, ``catalog list`` and ``catalog show``; re-check it with
        ``modelglass catalog sync``. :meth:`price_stale_on` takes another date."""
        return self.price_stale_on(None)

    def price_stale_on(self, today: dt.date | None) -> bool:
        """:attr:`price_stale` as of ``today``."""
        return self.price_age_days(today) > STALE_AFTER_DAYS

    def estimate_cost(self, width: int, height: int, n: int = 1, *, steps: int | None = None,
                      quality: str | None = None, tier: str | None = None,
                      gpu_hour_usd: float | None = None, prompt: str | None = None) -> CostEstimate:
        """What ``n`` images of ``width``×``height`` would cost on this offer.

        ``prompt`` counts for token-priced offers (its text tokens are billed once per call);
        ``n`` is split into calls of at most the offer's ``max_images_per_call``. The estimate's
        ``max_usd`` is an upper bound usable as a budget reservation.
        """
        check_estimate_inputs(width=width, height=height, n=n, steps=steps)
        est = estimate_price(self.offer.price, width, height, n, steps=steps,
                             default_steps=_default_steps(self.controls), quality=quality,
                             tier=tier, gpu_hour_usd=gpu_hour_usd or self.gpu_hour_usd,
                             prompt=prompt, images_per_call=self.controls.max_images_per_call)
        # ``est`` is new (estimate_price builds one per call, shared with nobody): name the
        # offer in place rather than copying the frozen dataclass (a copy cost a third of this).
        object.__setattr__(est, "offer", self.key)
        return est


def _default_steps(controls: Controls) -> int | None:
    if controls.steps and controls.steps.default is not None:
        return int(controls.steps.default)
    return None


class OfferNamed:
    """``key``, ``model`` and ``provider`` of anything that carries an ``offer`` (an
    :class:`OfferView`): a planned call, a routing candidate."""

    offer: OfferView

    @property
    def key(self) -> str:
        return self.offer.key

    @property
    def model(self) -> str:
        return self.offer.model_id

    @property
    def provider(self) -> str:
        return self.offer.provider
