"""What every ``modelglass`` command module shares: the consoles, exit codes, error printing
(:func:`friendly`), JSON output and the plan and fates tables (the shared options live in
``_cli_options``).

The command modules (``cli`` and ``_cli_*``) import from here; nothing here imports a command
module, so the CLI has no import cycle.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from .errors import (
    BudgetExceeded,
    CatalogError,
    ContentRejected,
    InvalidRequest,
    ModelglassError,
    NoEligibleModel,
    ProviderError,
    ProviderUnavailable,
)

out = Console()
err = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])


#: Exit statuses, the same for every command (README "Exit codes").
EXIT_OK, EXIT_PROVIDER, EXIT_USER = 0, 1, 2


def exit_code(exc: ModelglassError) -> int:
    """1: a provider failed or refused (the request itself was fine); 2: everything the user can
    change — a flag, the request, the catalog, a key, the budget, or nothing being eligible."""
    return EXIT_PROVIDER if isinstance(exc, ProviderError | ContentRejected) else EXIT_USER


def error_dict(exc: ModelglassError) -> dict[str, Any]:
    """The JSON form of an error: type, message, exit code and the fields that say more."""
    data: dict[str, Any] = {"type": type(exc).__name__, "message": str(exc),
                            "exit_code": exit_code(exc)}
    for name in ("field", "path", "provider", "status", "retry_after", "retryable", "estimate_usd",
                 "limit_usd", "code"):
        value = getattr(exc, name, None)
        if value is not None:
            data[name] = value
    rejected = getattr(exc, "rejected", None)
    if rejected:
        data["rejected"] = dict(rejected)
    attempts = getattr(exc, "attempts", None)
    if attempts:
        data["attempts"] = [a.to_dict() if hasattr(a, "to_dict") else str(a) for a in attempts]
    hint = _hint(exc)
    if hint:
        data["hint"] = hint
    return data


def _needs_key(provider: str | None) -> bool:
    from .providers import PROVIDER_CLASSES, provider_class

    return provider in PROVIDER_CLASSES and bool(provider_class(provider).env_keys)


def _keys_set() -> bool:
    import os

    try:
        from .providers import PROVIDER_CLASSES, provider_class

        names = [k for p in PROVIDER_CLASSES for k in provider_class(p).env_keys]
    except Exception:  # noqa: BLE001 - a hint must never be the thing that fails
        names = ["OPENAI_API_KEY", "FAL_KEY", "REPLICATE_API_TOKEN"]
    return any(os.environ.get(k) for k in names)


def _hint(exc: ModelglassError) -> str | None:
    if exc.hint:
        return exc.hint
    text = str(exc)
    # the no-keys hint only where a keyed provider (not Ray, say) was what was missing
    if isinstance(exc, NoEligibleModel | ProviderUnavailable) and not _keys_set() and (
            _needs_key(getattr(exc, "provider", None)) or "availability" in text):
        return _NO_KEYS
    if exit_code(exc) != EXIT_USER:
        return None
    for kind, hint in _HINTS:  # every mistake the user can fix says where to look next
        if isinstance(exc, kind):
            field = getattr(exc, "field", None)
            return hint.format(field=f"`{field}`" if field else "the value named above")
    return None


_HINTS: tuple[tuple[type[ModelglassError], str], ...] = (
    (NoEligibleModel, "modelglass --verbose <command> lists every rejected offer; `route "
                      "--explain` shows the ranking"),
    (InvalidRequest, "change {field} and run again; `modelglass <command> --help` lists the "
                     "options and their values"),
    (CatalogError, "check the name (`modelglass catalog list` lists models, `catalog list "
                   "--offers` offers), or fix the file at the line named"),
    (BudgetExceeded, "raise the limit (--budget / --max-cost) or choose a cheaper quality "
                     "(--quality draft)"),
    (ProviderUnavailable, "`modelglass providers` says what each provider needs here"),
    (ModelglassError, "`modelglass <command> --help` says what each option takes"),
)

_NO_KEYS = ("no provider key is set here: add --simulate to generate against the built-in "
            "simulators (no keys, no cost), or --assume-available fal,openai to route and plan "
            "without keys")


def friendly(fn: F) -> F:
    """Print modelglass errors as one clear message and exit non-zero, without a traceback.

    Exit statuses (:func:`exit_code`): 1 when a provider failed or refused, 2 for what the user
    can change (nothing eligible included). With ``--json`` the error is a JSON object on stdout
    (``{"error": {"type", "message", "exit_code", ...}}``). Error text is printed literally:
    provider replies and user input are never read as Rich markup.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            try:
                return fn(*args, **kwargs)
            except (OSError, UnicodeDecodeError) as exc:
                from ._paths import file_mistake

                typed = file_mistake(exc)
                if typed is None:
                    raise
                raise typed from exc
        except ModelglassError as exc:
            code = exit_code(exc)
            if kwargs.get("json_out"):
                emit_json({"error": error_dict(exc)})
            else:
                verbose = _STATE["verbose"]
                err.print(Text.assemble(("error: ", "bold red"),
                                        f"{type(exc).__name__}: {_message(exc, verbose)}"),
                          highlight=False)
                hint = _hint(exc)
                if hint:
                    err.print(Text(f"hint: {hint}", style="yellow"), highlight=False)
            raise typer.Exit(code) from None

    return wrapper  # type: ignore[return-value]


def _message(exc: ModelglassError, verbose: bool) -> str:
    # NoEligibleModel keeps every rejection; by default a few lines, all with --verbose.
    full = getattr(exc, "full_message", None)
    if verbose and callable(full):
        return str(full())
    return str(exc)


def emit_json(data: Any) -> None:
    """Print ``data`` as indented JSON on stdout (what every ``--json`` prints)."""
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


#: Set by the ``modelglass`` callback (``--verbose``); read by :func:`friendly`.
_STATE = {"verbose": False}


def _catalog(path: str | None) -> Any:
    from .catalog import Catalog

    return Catalog.load(path) if path else Catalog.default()


def print_plan(data: dict[str, Any]) -> None:
    """Human rendering of a ProviderCall.to_dict()."""
    est = data["estimate"]
    cost = "unknown" if est["usd"] is None else f"${est['usd']:.4f}"
    out.print(Text.assemble((data["offer"], "bold"), f" → {data['endpoint']}  size {data['size']}  "
                            f"n {data['n']}  chunks {data['chunks']}"), highlight=False)
    out.print(Text(f"estimated cost: {cost} ({est['basis']}"
                   f"{', approximate' if est['approximate'] else ''})"), highlight=False)
    if data["seeds"]:
        out.print(f"seeds: {data['seeds']}{' (drawn; pass --seed to fix)' if data['seed_drawn'] else ''}")
    if data["upscale"]:
        up = data["upscale"]
        out.print(f"[yellow]upscale needed:[/] {up['from']} → {up['to']} (×{up['factor']})")
    out.print(fates_table(data["fates"]))
    out.print("payload:")
    out.print_json(json.dumps(data["payload"], default=str))
    for note in data.get("notes") or []:
        out.print(Text(f"note: {note}"), highlight=False)


def fates_table(fates: list[dict[str, Any]]) -> Table:
    """Every requested control's fate as one table (``plan`` and ``generate`` print the same)."""
    t = Table(title="fates")
    for col in ("control", "fate", "sent", "why / delta"):
        t.add_column(col)
    for f in fates:
        t.add_row(*fate_cells(f))
    return t


def fate_cells(f: dict[str, Any]) -> list[Text]:
    """A fate as table cells, literally: a prompt or a provider's words are never markup."""
    why = " ".join(x for x in (f["reason"], f["delta"] and f"({f['delta']})") if x)
    return [Text(str(f["control"])), Text(str(f["kind"])),
            Text("" if f["applied"] is None else str(f["applied"])), Text(why)]
