"""Cost-aware routing: find the cheapest offer that is good enough, cap what a call may cost,
and share one budget between calls.

Runs offline against the simulators (see quickstart.py).

    python examples/cost_aware_routing.py
"""

from __future__ import annotations

import modelglass as mg
from modelglass.testing import simulate


def main() -> None:
    cat = mg.Catalog.default()

    # 1. Which hero offers render legible text, cheapest first? (numbers, not display strings)
    rows = cat.query(axis="hero", where={"text_rendering": (">=", 8)}, sort="cost")
    print("hero offers with text_rendering >= 8, cheapest first:")
    for row in rows[:5]:
        cost = "unknown" if row.cost_per_image_usd is None else f"${row.cost_per_image_usd:.3f}"
        print(f"  {row.key:28} {cost:>8}  quality {row.quality:.2f}")

    with simulate(), mg.Client(budget=mg.Budget(0.10)) as client:
        # 2. A ceiling per call: the router only considers offers whose estimate fits.
        prompt = "a storefront sign that says 'GRAND OPENING', photo"
        decision = client.route(prompt, quality="hero", max_cost_usd=0.05)
        choice = decision.require()
        print(f"\nunder $0.05 the router picks {choice.key} (estimated ${choice.cost_usd:.3f})")

        # 3. One budget shared by every call of this client: spend never passes it.
        made = 0
        for i in range(6):
            try:
                r = client.generate(prompt, quality="hero", max_cost_usd=0.05, seed=i)
            except mg.BudgetExceeded as exc:      # raised before anything is sent
                print(f"call {i + 1}: refused by the budget ({str(exc).splitlines()[0][:70]}…)")
                break
            made += 1
            print(f"call {i + 1}: {r.model}@{r.provider} ${r.cost_usd:.3f}")
        budget = client.budget
        assert budget is not None
        print(f"{made} images, spent ${budget.spent:.3f} of ${budget.limit_usd:.2f}")


if __name__ == "__main__":
    main()
