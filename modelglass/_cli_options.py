"""Every option more than one ``modelglass`` command takes, defined once.

- ``--catalog``, ``--json``, ``--assume-available``, ``--policy``, ``--max-latency``;
- :data:`REQUEST_OPTIONS`, the 16 options that fill an :class:`~modelglass.ImageRequest`, and
  :data:`ROUTING_OPTIONS` (``route``, ``plan`` and ``generate`` take both, through the
  :func:`request_options` and :func:`routing_options` decorators);
- :data:`RUN_OPTIONS`, the options of the commands that run jobs (``generate``, ``batch``,
  ``eval``, ``compare``), each command taking one with :func:`run_option`.

Nothing here imports a command module (the command modules import from here).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import typer

F = TypeVar("F", bound=Callable[..., Any])

CatalogOpt = typer.Option(None, "--catalog", help="A catalog directory or models YAML to use.")
JsonOpt = typer.Option(False, "--json", help="Print JSON instead of tables.")


def _assume(value: str | None) -> list[str] | None:
    return [p.strip() for p in value.split(",") if p.strip()] if value else None


_quality = typer.Option(None, "--quality", "-q",
                        help="draft | thumbnail | hero | print, or an axis of the --policy file "
                             "(default: hero, or the policy's default_quality)")
_model = typer.Option(None, "--model", help="Pin a model id.")
_provider = typer.Option(None, "--provider", help="Pin a provider.")
_negative = typer.Option(None, "--negative", help="Negative prompt.")
_cfg = typer.Option(None, "--cfg")
_steps = typer.Option(None, "--steps")
_seed = typer.Option(None, "--seed")
_size = typer.Option(None, "--size", help="WIDTHxHEIGHT in pixels.")
_aspect = typer.Option(None, "--aspect-ratio", help="W:H")
_print = typer.Option(None, "--print-size", help="e.g. 8x10in, A4, 20x30cm")
_dpi = typer.Option(None, "--dpi")
_n = typer.Option(1, "-n", help="Number of images.")
_sampler = typer.Option(None, "--sampler")
_max_cost = typer.Option(None, "--max-cost", help="Hard ceiling in USD for the call.")
_strict = typer.Option(False, "--strict", help="Refuse instead of approximating or dropping.")
_commercial = typer.Option(False, "--commercial", help="Only models licensed for commercial use.")
_assume_opt = typer.Option(None, "--assume-available",
                           help="Comma-separated providers to treat as available (no keys needed).")

#: The request options of ``route``, ``plan`` and ``generate``, in --help order: the parameter
#: name, its type, its typer option and the :class:`~modelglass.ImageRequest` field it fills.
REQUEST_OPTIONS: tuple[tuple[str, Any, Any, str], ...] = (
    ("quality", str | None, _quality, "quality"),
    ("model", str | None, _model, "model"),
    ("provider", str | None, _provider, "provider"),
    ("negative", str | None, _negative, "negative_prompt"),
    ("cfg", float | None, _cfg, "cfg"),
    ("steps", int | None, _steps, "steps"),
    ("seed", int | None, _seed, "seed"),
    ("size", str | None, _size, "size"),
    ("aspect_ratio", str | None, _aspect, "aspect_ratio"),
    ("print_size", str | None, _print, "print_size"),
    ("dpi", int | None, _dpi, "dpi"),
    ("n", int, _n, "n"),
    ("sampler", str | None, _sampler, "sampler"),
    ("max_cost", float | None, _max_cost, "max_cost_usd"),
    ("strict", bool, _strict, "strict"),
    ("commercial", bool, _commercial, "commercial"),
)


#: ``--policy`` for the commands that route (``route``, ``plan``, ``generate``, ``batch``).
policy_opt = typer.Option(None, "--policy",
                          help="A routing policy file (default: the shipped default policy).")
#: ``--max-latency`` for the commands that route one request.
max_latency_opt = typer.Option(None, "--max-latency",
                               help="Hard limit in seconds on the offer's p90 latency (observed "
                                    "where measured, else the catalog's).")

#: The routing options of ``route``, ``plan`` and ``generate``, in --help order, as
#: :data:`REQUEST_OPTIONS`; the last item names the keyword of ``Client.route``/``plan`` filled.
ROUTING_OPTIONS: tuple[tuple[str, Any, Any, str], ...] = (
    ("assume_available", str | None, _assume_opt, "available"),
    ("policy", str | None, policy_opt, "policy"),
    ("max_latency", float | None, max_latency_opt, "max_latency_s"),
)


#: The default of a gathered parameter (``request``, ``routing``) that follows parameters with
#: defaults; the decorator puts the options in its place, so the value is never used.
GATHERED: Any = None


def _gathered(param: str, table: tuple[tuple[str, Any, Any, str], ...],
              finish: Callable[[dict[str, Any]], dict[str, Any]] = dict) -> Callable[[F], F]:
    """A decorator giving a command the options of ``table`` in place of its ``param``
    parameter: typer reads each option from the command's signature, so the wrapper's signature
    lists them (where ``param`` stood); the command receives them gathered as ``param``, a dict
    keyed by each row's last item, passed through ``finish``."""

    def decorate(fn: F) -> F:
        sig = inspect.signature(fn, eval_str=True)
        params = list(sig.parameters.values())
        at = [p.name for p in params].index(param)
        params[at:at + 1] = [inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                               default=opt, annotation=kind)
                             for name, kind, opt, _ in table]

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            gathered = finish({field: kwargs.pop(name) for name, _, _, field in table})
            return fn(*args, **{param: gathered}, **kwargs)

        wrapper.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in params}
        return wrapper  # type: ignore[return-value]

    return decorate


#: Give a command the :data:`REQUEST_OPTIONS` in place of its ``request`` parameter, which then
#: receives them as a dict of :class:`~modelglass.ImageRequest` keyword arguments.
request_options = _gathered("request", REQUEST_OPTIONS)

#: Give a command the :data:`ROUTING_OPTIONS` in place of its ``routing`` parameter, which then
#: receives ``available`` (a list of providers, or None), ``policy`` and ``max_latency_s``.
routing_options = _gathered("routing", ROUTING_OPTIONS,
                            lambda r: {**r, "available": _assume(r["available"])})


#: The options of the commands that run jobs, by parameter name: default, flags, help (its
#: ``{...}`` filled by :func:`run_option`) and the help's default fill.
RUN_OPTIONS: dict[str, tuple[Any, tuple[str, ...], str, dict[str, str]]] = {
    "out": (Path("out"), ("--out", "-o"), "Folder for the images{more}.", {"more": ""}),
    "models": (..., ("--models", "-m"), "Comma-separated model ids; pin a provider with "
               "model@provider (e.g. gpt-image-2@fal).", {}),
    "quality": ("hero", ("--quality", "-q"), "draft | thumbnail | hero | print.", {}),
    "concurrency": (8, ("--concurrency", "-c"), "Jobs in flight.", {}),
    "budget": (None, ("--budget",), "USD limit for the whole {scope}{more}.",
               {"more": " (earlier runs of the journal included)"}),
    "journal": (None, ("--journal",), "SQLite journal{where}: makes the {scope} resumable after "
                "a crash; a rerun with the same journal sends only what is missing.",
                {"where": ""}),
    "simulate": (False, ("--simulate",), "Serve {what} from the built-in simulators: no keys, "
                 "no internet, no cost{more}.", {"what": "every job", "more": ""}),
    "check": (False, ("--check",), "Check each image: {text} read back by OCR (needs "
              "modelglass[check]), blank images, duplicates{more}.",
              {"text": "the prompt's quoted text", "more": ""}),
    "on_fail": ("keep", ("--on-fail",), "When a check fails: keep, retry (a new seed, paid again) "
                "or escalate (the next ranked offer, paid again){more}.", {"more": ""}),
    # generate's own
    "timeout": (None, ("--timeout",), "Most seconds this call may take, every retry, wait and "
                "download included (the per-call deadline_s).", {}),
    "dry_run": (False, ("--dry-run",), "Plan only (like `modelglass plan`); send nothing.", {}),
    "expect_text": (None, ("--expect-text",), "The text the image should spell, when the prompt "
                    "does not quote it.", {}),
    # batch's own
    "engine": ("local", ("--engine",), "local (this process) or ray.", {}),
    "address": (None, ("--address",), "Ray cluster address (`auto` for the running cluster).",
                {}),
    "cache": (None, ("--cache",), "Result cache folder: repeats of a fixed-seed job on a "
              "deterministic offer are free.", {}),
    "limits": (None, ("--limits",), "YAML of per-provider limits {{provider: {{in_flight, "
               "per_minute}}}}.", {}),
    "allow_double_payment": (False, ("--allow-double-payment",), "Re-send jobs that may "
                             "already have been charged (sent before a crash, no result "
                             "recorded).", {}),
    "retry_failed": (False, ("--retry-failed",), "Run jobs that failed in an earlier run again "
                     "(those that cost nothing).", {}),
    "durable": (False, ("--durable",), "fsync the journal on every step (survives power loss, "
                "slower).", {}),
    "repair": (False, ("--repair",), "Rebuild a damaged --journal from what can still be read "
               "in it and the images in --out, then stop.", {}),
}


_SAME: Any = object()


def run_option(name: str, *, default: Any = _SAME,
               bounds: tuple[float | None, float | None] = (None, None), **fill: str) -> Any:
    """The typer option ``name`` of :data:`RUN_OPTIONS` as one command takes it: ``fill`` fills
    its help's ``{...}``; ``default`` and ``bounds`` (lowest, highest) are this command's own."""
    value, flags, text, defaults = RUN_OPTIONS[name]
    limits: dict[str, Any] = {k: v for k, v in zip(("min", "max"), bounds, strict=True)
                              if v is not None}
    return typer.Option(value if default is _SAME else default, *flags,
                        help=text.format(**{**defaults, **fill}), **limits)
