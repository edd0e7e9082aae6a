"""Check that the image spells what the prompt quoted, and pay for a retry when it does not.

Runs offline: ``simulate()`` serves the providers, and its images draw the prompt's quoted text;
``sim.text_accuracy`` makes the first-ranked offer misspell it half the time, so you can watch a
failed check, the paid retry, and the pass rates the observed store keeps. The OCR is real
(``pip install 'modelglass[check]'``; its models ship in the wheel).

    python examples/checked_text.py
"""

from __future__ import annotations

import modelglass as mg
from modelglass.testing import simulate

PROMPT = 'a neon sign above a diner door that says "OPEN LATE"'


def main() -> None:
    with simulate() as sim:
        store = mg.ObservedStore()                  # a throwaway file inside simulate()
        with mg.Client(observed=store) as client:
            offer = client.route(PROMPT, quality="draft").ranked[0].key
            sim.text_accuracy(offer, 0.5)
            for seed in range(1, 4):
                r = client.generate(PROMPT, quality="draft", seed=seed, check=True,
                                    on_fail="retry")
                text = next(c for c in r.checks if c.name == "text")
                print(f"seed {seed}: {text.verdict} (read {text.observed!r}), "
                      f"{len(r.rejected)} rejected try, cost ${r.cost_usd:.4f}")
            passed, total = store.check_rate(offer, check="text")
            print(f"{offer}: the text check passed {passed} of {total} tries")


if __name__ == "__main__":
    main()
