"""``modelglass generate`` and ``modelglass providers``, added to the CLI by :func:`register`.

``generate --simulate`` is the first thing a new user runs: it starts the loopback simulators
in-process (they set the keys and hosts the official clients read), runs the whole path — route,
plan, call, download, verify, save — and says on screen and in each file's metadata that the
image is simulated. ``--dry-run`` stops after planning; nothing is sent.
"""

from __future__ import annotations

import contextlib
import importlib.util
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from ._cli_common import _catalog, emit_json, err, fates_table, friendly, out, print_plan
from ._cli_options import (
    GATHERED,
    CatalogOpt,
    JsonOpt,
    request_options,
    routing_options,
    run_option,
)
from ._cli_policy import apply_policy
from ._cli_progress import Progress
from .catalog import LOCAL

if TYPE_CHECKING:
    from .client import Client
    from .result import ImageResult

__all__ = ["generate", "providers", "register"]

# What `--simulate` serves; local is never simulated (and needs no keys).
_SIMULATED = ("openai", "fal", "replicate")
SIMULATED_BANNER = "SIMULATED — no provider was called"


def register(app: typer.Typer) -> None:
    """Add ``generate`` and ``providers`` to the ``modelglass`` app."""
    app.command("generate")(generate)
    app.command("providers")(providers)


# -- client ----------------------------------------------------------------------------------------
def _local_wanted(provider: str | None) -> bool:
    # Torch is imported only when local is asked for, or when the local extra is installed (then
    # routing must know whether there is a GPU to offer local models on).
    if provider == LOCAL:
        return True
    return provider is None and all(importlib.util.find_spec(m) is not None
                                    for m in ("torch", "diffusers"))


def _make_client(catalog: str | None, provider: str | None, simulated: bool,
                 assume: list[str] | None) -> Client:
    import modelglass as mg

    kwargs: dict[str, Any] = {"catalog": _catalog(catalog) if catalog else None}
    if simulated:
        # Route among what the simulators serve, so the run is the same on every machine.
        kwargs["available"] = list(_SIMULATED) + ([LOCAL] if provider == LOCAL else [])
    elif assume is not None:
        kwargs["available"] = assume
    if provider == LOCAL or (not simulated and _local_wanted(provider)):
        kwargs["local"] = mg.LocalBackend()
    return mg.Client(**kwargs)


@contextlib.contextmanager
def _maybe_simulate(enabled: bool) -> Iterator[Any]:
    if not enabled:
        yield None
        return
    try:
        from .testing import simulate
        sim = simulate()
        sim.start()
    except ImportError as exc:
        raise typer.BadParameter(f"--simulate needs the testing extra ({exc.name} is missing): "
                                 "pip install 'modelglass[testing]'") from None
    try:
        yield sim
    finally:
        sim.stop()


def _events_kw(client: Client, sink: Any) -> dict[str, Any]:
    # The progress line needs the job's events; older clients simply run without it.
    import inspect

    return {"events": sink} if "events" in inspect.signature(client.generate).parameters else {}


# -- files -----------------------------------------------------------------------------------------
def _slug(prompt: str, limit: int = 40) -> str:
    words = re.sub(r"[^a-z0-9]+", "-", prompt.lower()).strip("-")
    return (words[:limit].rstrip("-") or "image")


def _free(path: Path) -> Path:
    """``path``, or ``stem-2.png``, ``stem-3.png`` … when it exists: never overwrite. A name is
    taken when a file of that stem exists with any image suffix (a C2PA JPEG asked to be saved as
    ``x.png`` is written as ``x.jpg``)."""
    def taken(p: Path) -> bool:
        return any(p.with_suffix(s).exists() for s in (".png", ".jpg", ".webp"))

    if not taken(path):
        return path
    for i in range(2, 10_000):
        candidate = path.with_name(f"{path.stem}-{i}{path.suffix}")
        if not taken(candidate):
            return candidate
    raise typer.BadParameter(f"too many files named {path.stem}-N in {path.parent}")


_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".avif",
                   ".heic", ".svg"}


def check_output_folder(folder: Path) -> None:
    """Make sure ``--out`` is a folder that exists (or can be made) and can be written, before
    anything is sent: a generation must never be paid for and then fail to save."""
    from ._provenance import check_writable_folder
    from .errors import InvalidRequest

    if folder.suffix.lower() in _IMAGE_SUFFIXES and not folder.is_dir():
        raise InvalidRequest(f"--out {folder} looks like an image file name, but --out is the "
                             "folder the images are saved into (named after the prompt and "
                             "seed, as PNG); nothing was sent", field="out", path=str(folder),
                             hint=f"--out {folder.parent / folder.stem}/ (a folder)")
    check_writable_folder(folder, option="--out")


def save_all(result: ImageResult, prompt: str, out_dir: Path) -> list[Path]:
    """Save every image of ``result`` into ``out_dir`` as ``<prompt-slug>-s<seed>-<i>.png``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files = []
    for img in result.images:
        seed = "x" if img.seed is None else str(img.seed)
        files.append(img.save(_free(out_dir / f"{_slug(prompt)}-s{seed}-{img.index}.png")))
    for i, img in enumerate(result.rejected):  # paid for too: a try that failed a check
        seed = "x" if img.seed is None else str(img.seed)
        img.save(_free(out_dir / f"{_slug(prompt)}-s{seed}-rejected-{i}.png"))
    return files


def summary(result: ImageResult, files: list[Path]) -> dict[str, Any]:
    """The JSON view of a generation: what was made, where it went, and how."""
    decision = result.decision
    return {
        "simulated": result.simulated,
        "note": "SIMULATED: no provider was called" if result.simulated else None,
        "model": result.model, "provider": result.provider,
        "offer": result.plan.offer.key if result.plan is not None else None,
        "cost_usd": None if result.cost_usd is None else round(result.cost_usd, 6),
        "cost_is_estimate": result.cost_is_estimate,
        "quality": decision.quality if decision is not None else None,
        "quality_default": bool(getattr(decision, "quality_defaulted", False)),
        "latency_s": round(result.latency_s, 4),
        "files": [str(f) for f in files],
        "images": [{"file": str(f), "width": img.width, "height": img.height, "mime": img.mime,
                    "seed": img.metadata.get("seed", img.seed), "sha256": img.sha256,
                    "simulated": img.simulated,
                    "c2pa": img.c2pa} for img, f in zip(result.images, files, strict=True)],
        "fates": [f.to_dict() for f in result.fates],
        "attempts": [a.to_dict() for a in result.attempts],
        "timings": result.timings,
        "ranked": [c.offer.key for c in decision.ranked[:5]] if decision is not None else [],
        "checks": [c.to_dict() for c in result.checks],
        "rejected": len(result.rejected),
    }


def _print_checks(data: dict[str, Any]) -> None:
    t = Table(title="checks")
    for col in ("image", "check", "verdict", "score", "expected → observed / why"):
        t.add_column(col)
    style = {"pass": "green", "fail": "red", "unknown": "yellow"}
    for c in data["checks"]:
        seen = (f"{c['expected']!r} → {c['observed']!r}" if c["name"] == "text"
                and c["observed"] is not None else "")
        t.add_row(str(c["image"]), c["name"], Text(c["verdict"], style=style[c["verdict"]]),
                  "" if c["score"] is None else f"{c['score']:.2f}",
                  Text(" ".join(x for x in (seen, c["detail"]) if x)))
    out.print(t)
    if data.get("rejected"):
        out.print(f"  {data['rejected']} image(s) from tries that failed a check were paid for "
                  f"and saved as *-rejected-*.png")


def _print_result(data: dict[str, Any], simulate_flag: bool) -> None:
    if data["simulated"]:
        out.print(Panel("[bold]SIMULATED — no provider was called.[/]\nThe images are "
                        "placeholders from modelglass's built-in simulators; each file's "
                        "metadata says simulated: true.", style="yellow", expand=False))
    elif simulate_flag:
        out.print("[yellow]--simulate: hosted providers were simulated, but this image came "
                  f"from {data['provider']} (not simulated).[/]")
    cost = "unknown" if data["cost_usd"] is None else f"${data['cost_usd']:.4f}"
    if data["cost_is_estimate"] and data["cost_usd"] is not None:
        cost += " (estimate)"
    if data["simulated"]:
        cost += " — simulated, nothing was charged"
    out.print(Text.assemble((data['offer'] or data['model'] + '@' + data['provider'], "bold"),
                            f"  cost {cost}  {data['latency_s']:.2f} s"),
              highlight=False, soft_wrap=True)
    if data["quality_default"]:
        out.print(Text(f"  quality: {data['quality']} (default; --quality to choose)"),
                  highlight=False, soft_wrap=True)
    for img in data["images"]:
        seed = "not sent (the offer takes no seed)" if img["seed"] is None else img["seed"]
        out.print(Text(f"  {img['file']}  {img['width']}x{img['height']}  seed {seed}"),
                  highlight=False, soft_wrap=True)
    if data["fates"]:
        out.print(fates_table(data["fates"]))
    if len(data["attempts"]) > 1 or any(a["error"] for a in data["attempts"]):
        t = Table(title="attempts")
        for col in ("#", "offer", "seconds", "error"):
            t.add_column(col)
        for a in data["attempts"]:
            t.add_row(*(Text(c) for c in (str(a["number"]), a["offer_id"],
                                          f"{a['duration_s']:.2f}", a["error"] or "")))
        out.print(t)
    if data.get("checks"):
        _print_checks(data)


# -- commands --------------------------------------------------------------------------------------
@friendly
@request_options
@routing_options
def generate(prompt: str, request: dict[str, Any],
             out_dir: Path = run_option("out", more=" (created)"),
             simulate: bool = run_option("simulate", what="the call"),
             dry_run: bool = run_option("dry_run"), routing: dict[str, Any] = GATHERED,
             timeout: float | None = run_option("timeout", bounds=(0.001, None)),
             check: bool = run_option("check"),
             on_fail: str = run_option("on_fail"), expect_text: str | None = run_option("expect_text"),
             json_out: bool = JsonOpt, catalog: str | None = CatalogOpt) -> None:
    """Generate images for PROMPT and save them with their provenance to --out."""
    kw = {**request, "max_latency_s": routing["max_latency_s"], "expect_text": expect_text}
    with _maybe_simulate(simulate):
        client = _make_client(catalog, request["provider"], simulate, routing["available"])
        apply_policy(client, routing["policy"])  # policy hook
        with client:
            if dry_run:
                data = client.plan(prompt, **kw).to_dict()
                if json_out:
                    emit_json({"dry_run": True, "simulated": simulate, "plan": data})
                else:
                    out.print("[bold]dry run[/]: nothing was sent")
                    print_plan(data)
                return
            check_output_folder(out_dir)  # before anything is paid for
            with Progress(err) as progress:
                per_call: dict[str, Any] = {"deadline_s": timeout} if timeout is not None else {}
                if check or expect_text or on_fail != "keep":  # --expect-text implies --check
                    per_call.update(check=check or bool(expect_text), on_fail=on_fail)
                result = client.generate(prompt, **kw, **per_call,
                                         **_events_kw(client, progress))
            files = save_all(result, prompt, out_dir)
    data = summary(result, files)
    if json_out:
        emit_json(data)
    else:
        _print_result(data, simulate)


@friendly
def providers(json_out: bool = JsonOpt) -> None:
    """Which providers can be used here, and what to do about the ones that cannot."""
    import modelglass as mg

    from .providers import PROVIDER_CLASSES, provider_class

    client = mg.Client()
    rows: list[dict[str, Any]] = []
    for name in PROVIDER_CLASSES:
        avail = client.availability(name)
        try:
            cls = provider_class(name)
            package, extra, keys = cls.client_package, cls.extra, list(cls.env_keys)
        except ImportError:
            package, extra, keys = None, None, []
        rows.append({
            "provider": name, "available": avail.ok, "reason": avail.reason,
            "keys": keys, "client_package": package,
            "installed": None if package is None else importlib.util.find_spec(package) is not None,
            "install": f"pip install 'modelglass[{extra or name}]'",
        })
    if json_out:
        emit_json(rows)
        return
    t = Table(title="providers")
    for col in ("provider", "available", "why / what to do"):
        t.add_column(col)
    for r in rows:
        t.add_row(Text(r["provider"]), Text("yes", style="green") if r["available"]
                  else Text("no", style="red"), Text(r["reason"]))
    out.print(t)
    if not any(r["available"] for r in rows):
        out.print("Nothing is usable yet: try `modelglass generate \"...\" --simulate` "
                  "(no keys needed).")
