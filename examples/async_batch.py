"""Many thumbnails at once on one AsyncClient, all paid from one shared budget: the budget runs
out part-way, and the jobs that no longer fit are refused before anything is sent.

Runs offline against the simulators (see quickstart.py).

    python examples/async_batch.py
"""

from __future__ import annotations

import asyncio

import modelglass as mg
from modelglass.testing import simulate

PROMPTS = [f"a watercolor fox, study {i}" for i in range(12)]


async def main() -> None:
    budget = mg.Budget(0.02)                        # shared by every call (and every client)
    sem = asyncio.Semaphore(8)                      # at most 8 jobs in flight
    async with mg.AsyncClient(budget=budget) as client:

        async def one(prompt: str) -> mg.ImageResult | mg.BudgetExceeded:
            async with sem:
                try:
                    return await client.generate(prompt, quality="thumbnail", seed=1)
                except mg.BudgetExceeded as exc:    # raised before anything is sent
                    return exc

        results = await asyncio.gather(*(one(p) for p in PROMPTS))
    done = [r for r in results if isinstance(r, mg.ImageResult)]
    print(f"{len(done)} of {len(PROMPTS)} made; spent ${budget.spent:.4f} of "
          f"${budget.limit_usd:.2f}; {len(PROMPTS) - len(done)} refused by the budget")
    for r in done[:3]:
        print("  ", r)


if __name__ == "__main__":
    with simulate():
        asyncio.run(main())
