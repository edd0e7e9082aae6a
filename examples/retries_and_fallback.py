"""What happens when a provider misbehaves: retries honouring Retry-After, then fallback.

The simulators take a scripted fault plan, so the failure is reproducible offline.

    python examples/retries_and_fallback.py
"""

from __future__ import annotations

import modelglass as mg
from modelglass.testing import simulate

with simulate() as sim, mg.Client(max_retries=2, retry_backoff_s=0.05) as client:
    # fal answers 429 (asking for 0.2 s) and then keeps failing with 503; Replicate is fine.
    sim.fail("fal", status=429, times=1, retry_after=0.2)
    sim.fail("fal", status=503, times=10)
    result = client.generate("a lighthouse at dusk", quality="draft", seed=3)

    print(result)
    for a in result.attempts:                       # every try, retries and fallbacks
        outcome = "ok" if a.ok else f"{a.error_type} (HTTP {a.status})"
        print(f"  {a.offer_id:<28} try {a.number}: {outcome} in {a.duration_s * 1000:.0f} ms")
    print("requests that reached fal:", len(sim.requests("fal", stage="submit")))

    # A content refusal is never retried and never falls back. (fal is cooling down after the
    # failures above, so the router now sends draft jobs to Replicate: script the refusal there.)
    sim.reset()
    sim.fail("replicate", kind="content")
    try:
        client.generate("a lighthouse at dusk", quality="draft", provider="replicate")
    except mg.ContentRejected as exc:
        print("refused:", str(exc).splitlines()[0])
        print("requests that reached Replicate:", len(sim.requests("replicate", stage="create")),
              "(no retry, no fallback)")
