"""``catalog verify --simulate``: quotes against bills, offline, on the loopback simulators.

One job per provider runs against :func:`modelglass.testing.simulate`, each provider's bill is read
where that provider states it (OpenAI usage, fal billing events, Replicate ``predict_time``), and
:func:`~modelglass.catalog_tools._verify.verify` compares them with the quotes in a throwaway store.
``changes`` scripts a price change per provider (a factor: 1.2 = the provider bills 20 % more):
fal's unit price, OpenAI's image tokens per image, Replicate's run time.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..catalog_tools._verify import VerifyReport

__all__ = ["SIMULATED_OFFERS", "simulate_verify"]

#: The offer each provider's simulated job runs on, and its size (one image, draft quality).
SIMULATED_OFFERS = {"fal": ("flux-dev@fal", "1024x1024"),
                    "openai": ("gpt-image-2@openai", "1024x1024"),
                    "replicate": ("sdxl@replicate", "1024x1024")}
#: The hardware rate the simulation bills sdxl@replicate at: Replicate's Nvidia L40S price
#: (replicate.com/pricing, $0.000975/s). A simulation assumption, not a catalog fact.
SIMULATED_REPLICATE_USD_PER_S = 0.000975


def _catalog() -> Any:
    """The user's catalog, with a time-billed rate on the simulated Replicate offer."""
    from ..catalog import Catalog

    cat = Catalog.default()
    key = SIMULATED_OFFERS["replicate"][0]
    view = cat.offer(key)
    if not view.offer.price.usd_per_second:
        price = view.offer.price.model_copy(update={"usd_per_second":
                                                    SIMULATED_REPLICATE_USD_PER_S})
        cat = _patched(cat, key, price)
    return cat


def _patched(cat: Any, key: str, price: Any) -> Any:
    import tempfile
    from pathlib import Path

    import yaml

    from ..catalog import Catalog, default_catalog_dir

    data = {"as_of": cat.offer(key).offer.as_of.isoformat(), "source": "verify --simulate",
            "offers": {key: {"price": price.model_dump(mode="json", exclude_none=True)}}}
    tmp = Path(tempfile.mkdtemp(prefix="modelglass-verify-sim-")) / "overlay.yaml"
    tmp.write_text(yaml.safe_dump(data), encoding="utf-8")
    return Catalog.load(default_catalog_dir(), overlays=[*cat.overlay.files, str(tmp)])


def _script(sim: Any, cat: Any, changes: Mapping[str, float]) -> None:
    from ._openai import OUTPUT_TOKENS_1024

    if "fal" in changes:
        view = cat.offer(SIMULATED_OFFERS["fal"][0])
        value, unit = sim.platform.fal_prices[view.endpoint]
        sim.platform.fal_prices[view.endpoint] = (value * changes["fal"], unit)
    # The OpenAI simulator's token table is gpt-image-1's; calibrate it to the catalog's count
    # for the simulated offer, so that an unchanged price bills 1.0×.
    oview = cat.offer(SIMULATED_OFFERS["openai"][0])
    tier = oview.offer.price.tier_for_quality.get("draft", "low") \
        if oview.offer.price.tier_for_quality else "low"
    tokens = (oview.offer.price.output_tokens or {}).get(tier, {}).get("1024x1024")
    calibrate = tokens / OUTPUT_TOKENS_1024[tier] if tokens and tier in OUTPUT_TOKENS_1024 else 1.0
    sim.platform.openai_token_factor = calibrate * changes.get("openai", 1.0)
    rkey, size = SIMULATED_OFFERS["replicate"]
    rview = cat.offer(rkey)
    w, h = (int(x) for x in size.split("x"))
    quote = rview.estimate_cost(w, h, 1).usd or 0.0
    seconds = quote / (rview.offer.price.usd_per_second or SIMULATED_REPLICATE_USD_PER_S)
    ref = rview.endpoint.split(":", 1)[0]
    sim.platform.replicate_predict_time[ref] = round(seconds * changes.get("replicate", 1.0), 6)


def simulate_verify(changes: Mapping[str, float] | None = None) -> VerifyReport:
    """Run one job per provider on the simulators (with ``changes`` scripted) and verify the
    quotes against the bills. Nothing leaves 127.0.0.1; nothing is spent."""
    import modelglass as mg

    from ..catalog._observed import ObservedStore
    from ..catalog_tools._verify import verify
    from ._simulate import simulate

    changes = dict(changes or {})
    unknown = set(changes) - set(SIMULATED_OFFERS)
    if unknown:
        raise mg.InvalidRequest(f"--simulate-change knows {', '.join(SIMULATED_OFFERS)}, not "
                                f"{', '.join(sorted(unknown))}", field="simulate_change")
    store = ObservedStore(":memory:")
    with simulate() as sim:
        cat = _catalog()
        _script(sim, cat, changes)
        with mg.Client(catalog=cat, observed=store) as client:
            for key, size in SIMULATED_OFFERS.values():
                view = cat.offer(key)
                client.generate("a red fox in the snow", model=view.model_id,
                                provider=view.provider, size=size, n=1, quality="draft",
                                max_cost_usd=1.0)
        report = verify(cat, store, offers=[k for k, _ in SIMULATED_OFFERS.values()],
                        env=dict(os.environ))
    # A simulator's latency, sizes and seeds say nothing about the catalog: only bills count.
    report.checks = [c for c in report.checks if c.check == "bill"]
    report.notes.insert(0, "simulated: " + (", ".join(f"{p} bills ×{f:g}" for p, f in
                                                       changes.items()) or "no price change"))
    return report
