"""``modelglass policy``: check a policy file, and replay a workload under two policies.

    modelglass policy check policy.yaml
    modelglass policy replay jobs.jsonl --policy policy.yaml --vs default [--json] [--plot out.png]

Replay calls no provider: it routes every job under both policies with the hosted providers
assumed available (``--assume-available`` to change) and prints the figures side by side.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.markup import escape
from rich.table import Table

from ._cli_common import _catalog, emit_json, err, friendly, out
from ._cli_options import CatalogOpt, JsonOpt

if TYPE_CHECKING:
    from .catalog import Catalog
    from .routing import Policy
    from .routing._replay import Replay

policy_app = typer.Typer(no_args_is_help=True,
                         help="Routing policies: check a policy file, replay a workload under two.")

def _policy(value: str, catalog: Catalog) -> Policy:
    from .routing import Policy

    policy = Policy.coerce(value, catalog=catalog)
    assert policy is not None
    return policy


@policy_app.command("check")
@friendly
def check(path: Path, json_out: bool = JsonOpt, catalog: str | None = CatalogOpt) -> None:
    """Validate a policy file: file:line errors, unknown names (with the valid ones)."""
    cat = _catalog(catalog)
    policy = _policy(str(path), cat)
    axes = policy.axis_names(cat)
    if json_out:
        data = policy.to_dict()
        data["axes_resolved"] = {a: policy.quality_axis(a, cat).model_dump(mode="json")
                                 for a in axes}
        emit_json(data)
        return
    out.print(f"[green]ok[/] {escape(str(path))}: policy {policy.name!r}", highlight=False)
    out.print("quality axes under this policy:", highlight=False)
    for a in axes:
        ax = policy.quality_axis(a, cat)
        total = sum(ax.weights.values()) or 1.0
        base = policy.spec.axes.get(a)
        origin = (f" (extends {base.extends})" if base is not None and base.extends else
                  " (changed by the policy)" if base is not None else "")
        weights = ", ".join(f"{k} {v / total:.2f}" for k, v in ax.weights.items())
        minimums = ", ".join(f"{k} ≥ {v:g}" for k, v in ax.minimums.items()) or "none"
        ceiling = "none" if ax.max_cost_usd is None else f"${ax.max_cost_usd:g}/image"
        out.print(f"  {a}{origin}: weights {weights}; minimums {minimums}; size "
                  f"{ax.target_size}; cost weight {ax.cost_weight:g}; ceiling {ceiling}",
                  highlight=False, markup=False, soft_wrap=True)
    rules = policy.spec
    for section in ("providers", "models"):
        r = getattr(rules, section)
        if r.allow is not None or r.deny or r.prefer:
            out.print(f"{section}: allow {r.allow if r.allow is not None else 'all'}; deny "
                      f"{r.deny or 'none'}; prefer {r.prefer or 'none'}", highlight=False)
    req = {k: v for k, v in rules.require.model_dump().items() if v is not None}
    if req:
        out.print(f"require: {req}", highlight=False)
    lim = rules.limits
    if lim.max_latency_p90_s is not None or lim.max_cost_usd is not None:
        out.print(f"limits: max_latency_p90_s {lim.max_latency_p90_s}, unknown latency "
                  f"{lim.unknown_latency}, max_cost_usd {lim.max_cost_usd}", highlight=False)
    h = rules.health
    out.print(f"tie-break: {', '.join(rules.tie_break)} (tolerance {rules.tie_tolerance:g}); "
              f"health: {'off' if not h.enabled else f'{h.failures} failures in {h.window_s:g} s → {h.cooldown_s:g} s cooldown per {h.scope}'}",
              highlight=False)


_policy_opt = typer.Option(..., "--policy", help="The policy file to try.")
_vs_opt = typer.Option("default", "--vs", help="The policy to compare with (a file, or 'default').")
_assume_opt = typer.Option(None, "--assume-available",
                           help="Comma-separated providers treated as available (default: every "
                                "hosted provider in the catalog).")
_today_opt = typer.Option(None, "--today", help="Route as of this date (YYYY-MM-DD).")
_differences_opt = typer.Option(15, "--differences", help="How many differing jobs to list.")
_plot_opt = typer.Option(None, "--plot", help="Write a spend-vs-quality plot (PNG).")


@policy_app.command("replay")
@friendly
def replay_cmd(workload: Path, policy: str = _policy_opt, vs: str = _vs_opt,
               assume_available: str | None = _assume_opt, today: str | None = _today_opt,
               differences: int = _differences_opt, plot: Path | None = _plot_opt,
               json_out: bool = JsonOpt, catalog: str | None = CatalogOpt) -> None:
    """Route every job of WORKLOAD (JSONL of requests) under two policies; no provider is called."""
    from .routing._replay import read_workload, replay

    cat = _catalog(catalog)
    base = _policy(vs, cat)
    mine = _policy(policy, cat)
    jobs = read_workload(workload)
    names = _names(vs, base), _names(policy, mine)
    if names[0] == names[1]:
        names = (f"{names[0]} (--vs)", f"{names[1]} (--policy)")
    available = [p.strip() for p in assume_available.split(",") if p.strip()] \
        if assume_available else None
    when = dt.date.fromisoformat(today) if today else None
    from .routing._latency import DEFAULT_OBSERVED

    # Latency limits judge what was measured here, as live routing does.
    result = replay(jobs, [(names[0], base), (names[1], mine)], cat, available=available,
                    today=when, observed=DEFAULT_OBSERVED)
    if plot is not None:
        write_plot(result, plot)
    if json_out:
        emit_json(result.to_dict())
        return
    print_replay(result, differences)
    if plot is not None:
        out.print(f"plot: {escape(str(plot))}", highlight=False)


def _names(value: str, policy: Policy) -> str:
    return "default" if value == "default" else policy.name


def print_replay(result: Replay, differences: int = 15) -> None:
    t = Table(title=f"replay of {len(result.jobs)} jobs (no provider called)")
    t.add_column("")
    for p in result.policies:
        t.add_column(escape(p.name), justify="right")
    for row in result.table():
        t.add_row(*(escape(c) for c in row))
    out.print(t)
    diffs = result.differences()
    if diffs and differences > 0:
        d = Table(title=f"jobs routed differently ({len(diffs)}; first {min(differences, len(diffs))})")
        d.add_column("job")
        d.add_column("axis")
        for p in result.policies:
            d.add_column(escape(p.name))
        for job, outcomes in diffs[:differences]:
            cells = [(o.offer or "none") + ("" if o.cost_usd is None else f" ${o.cost_usd:.4f}")
                     for o in outcomes]
            d.add_row(escape(job.id), escape(outcomes[0].axis), *(escape(c) for c in cells))
        out.print(d)
    for p in result.policies:
        for o in p.no_offer[:3]:
            err.print(f"{escape(p.name)}: {escape(o.job_id)}: {escape(o.why[:200])}",
                      highlight=False)


def write_plot(result: Replay, path: Path) -> None:
    """Spend against mean quality, one point per policy (matplotlib, imported here)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4), dpi=120)
    for p in result.policies:
        q = p.mean_quality
        if q is None:
            continue
        ax.scatter([p.spend_usd], [q], s=60)
        ax.annotate(f"{p.name}\n${p.spend_usd:.2f}, {q:.2f}/10, {len(p.no_offer)} unrouted",
                    (p.spend_usd, q), textcoords="offset points", xytext=(6, 6), fontsize=8)
    ax.set_xlabel("estimated spend (USD)")
    ax.set_ylabel("mean quality on each job's axis (0–10)")
    ax.set_title(f"policy replay, {len(result.jobs)} jobs")
    ax.margins(0.35)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def register(app: Any) -> None:
    """Add ``policy`` to the ``modelglass`` command."""
    app.add_typer(policy_app, name="policy")


def apply_policy(client: Any, value: str | None) -> None:
    """Route ``client``'s jobs by the policy file ``value`` (None: keep the client's)."""
    if value:
        client.policy = _policy(value, client.catalog)
