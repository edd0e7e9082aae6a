"""One prompt and seed across several models, side by side: a contact sheet and its JSON.

>>> import modelglass as mg
>>> from modelglass.testing import simulate
>>> with simulate(), mg.Client() as client:                              # doctest: +SKIP
...     sheet = mg.compare(client, "a cozy reading nook", ["flux-schnell", "sdxl"], seed=11)
...     sheet.render("sheet.png")

Each model is generated once, concurrently (threads over one :class:`~modelglass.Client`), under
an optional :class:`~modelglass.Budget`: a model whose estimate no longer fits is shown as skipped,
never paid for. A failed model is a tile with its error, not an exception: the sheet is for looking.
"""

from __future__ import annotations

import logging
import textwrap
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import BudgetExceeded, CatalogError, ModelglassError

logger = logging.getLogger("modelglass")

if TYPE_CHECKING:
    from .budget import Budget
    from .client import Client
    from .result import GeneratedImage, ImageResult

__all__ = ["ComparisonSheet", "Tile", "compare_models", "parse_models"]

_TILE = 360          # image side in the sheet, pixels
_TEXT_H = 150        # text block under each image
_MARGIN = 16
_HEADER_H = 74


@dataclass
class Tile:
    """One model's outcome: its image (or error), who served it, what it cost and took, and every
    control whose fate was not ``honored``."""

    model: str
    provider: str | None = None
    offer: str | None = None
    cost_usd: float | None = None
    cost_is_estimate: bool = False
    latency_s: float | None = None
    seed: int | None = None
    size: str | None = None
    fates: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    error_type: str | None = None
    simulated: bool = False
    image: GeneratedImage | None = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        return self.image is not None

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "provider": self.provider, "offer": self.offer,
                "ok": self.ok, "cost_usd": None if self.cost_usd is None else round(self.cost_usd, 6),
                "cost_is_estimate": self.cost_is_estimate,
                "latency_s": None if self.latency_s is None else round(self.latency_s, 3),
                "seed": self.seed, "size": self.size, "fates": self.fates,
                "error": self.error, "error_type": self.error_type, "simulated": self.simulated,
                "sha256": self.image.sha256 if self.image is not None else None}


@dataclass
class ComparisonSheet:
    """Every tile of a comparison, the prompt and seed, and what the whole run cost."""

    prompt: str
    seed: int | None
    quality: str
    tiles: list[Tile]
    budget_usd: float | None = None
    wall_s: float = 0.0
    notices: list[str] = field(default_factory=list)

    @property
    def cost_usd(self) -> float:
        return round(sum(t.cost_usd or 0.0 for t in self.tiles if t.ok), 6)

    @property
    def simulated(self) -> bool:
        return any(t.simulated for t in self.tiles)

    def to_dict(self) -> dict[str, Any]:
        return {"prompt": self.prompt, "seed": self.seed, "quality": self.quality,
                "budget_usd": self.budget_usd, "cost_usd": self.cost_usd,
                "wall_s": round(self.wall_s, 3), "simulated": self.simulated,
                "notices": list(self.notices), "tiles": [t.to_dict() for t in self.tiles]}

    def render(self, path: str | Path) -> Path:
        """Draw the contact sheet as a PNG at ``path`` (Pillow); returns the path."""
        from ._paths import check_output_file

        path = check_output_file(path, field="path", suffix=".png")
        render_sheet(self).save(path, format="PNG")
        return path


def parse_models(text: str | Sequence[str]) -> list[tuple[str, str | None]]:
    """``"flux-dev,gpt-image-2@fal"`` → ``[("flux-dev", None), ("gpt-image-2", "fal")]``."""
    items = [text] if isinstance(text, str) else list(text)
    out: list[tuple[str, str | None]] = []
    for item in items:
        for part in (p.strip() for p in item.split(",")):
            if part:
                model, _, provider = part.partition("@")
                out.append((model.strip(), provider.strip() or None))
    return out


def compare_models(client: Client, prompt: str, models: Sequence[str] | str, *,
                   seed: int | None = None, quality: str = "hero",
                   budget: Budget | float | None = None, concurrency: int = 8,
                   on_tile: Callable[[Tile], None] | None = None,
                   **fields: Any) -> ComparisonSheet:
    """Generate ``prompt`` once on each model, concurrently; a tile per model (``mg.compare``).

    ``models`` are catalog ids, optionally pinned to a provider (``"gpt-image-2@fal"``); a
    repeat is generated once (``sheet.notices`` says so).
    ``budget`` (a :class:`~modelglass.Budget` or dollars) bounds the whole comparison: a model
    whose estimate does not fit what is left is skipped with the reason (it replaces the
    client's own budget for the duration of the call; without it the client's budget applies). ``fields`` are passed to
    every request (``size=``, ``negative_prompt=``, ``steps=`` …). ``on_tile`` is called with
    each tile as soon as its model is done (from a worker thread), e.g. for a progress line.
    """
    from .budget import Budget

    pairs, notices = _unique(parse_models(models))
    if not pairs:
        from .errors import InvalidRequest

        raise InvalidRequest("compare needs at least one model (--models a,b,c)", field="models")
    for model, _ in pairs:
        client.catalog.model(model)  # unknown ids fail before anything is sent
    client.policy.quality_axis(quality, client.catalog)  # so does an unknown quality
    limit = budget if isinstance(budget, Budget) else (Budget(budget) if budget is not None else None)
    if limit is None:
        limit = client.budget

    def one(pair: tuple[str, str | None]) -> Tile:
        model, provider = pair
        started = time.monotonic()
        try:
            result = client.generate(prompt, model=model, provider=provider, seed=seed,
                                     quality=quality, **fields)
        except CatalogError:
            raise  # the catalog itself is wrong: nothing to compare
        except BudgetExceeded as exc:
            return Tile(model=model, provider=provider, error=f"skipped: {exc}",
                        error_type=type(exc).__name__)
        except ModelglassError as exc:
            return Tile(model=model, provider=getattr(exc, "provider", None) or provider,
                        error=str(exc).splitlines()[0],
                        error_type=type(exc).__name__, latency_s=time.monotonic() - started)
        return tile_from_result(model, result)

    started = time.monotonic()
    # The client's own budget machinery reserves each job's upper bound before sending and
    # settles it after, so concurrent tiles can never spend past the limit together.
    saved = client.budget
    if limit is not None:
        client.budget = limit
    try:
        def run(pair: tuple[str, str | None]) -> Tile:
            tile = one(pair)
            if on_tile is not None:
                on_tile(tile)
            return tile

        with ThreadPoolExecutor(max_workers=max(1, min(concurrency, len(pairs)))) as pool:
            tiles = list(pool.map(run, pairs))
    finally:
        client.budget = saved
    return ComparisonSheet(prompt=prompt, seed=seed, quality=quality, tiles=tiles,
                           budget_usd=limit.limit_usd if limit else None,
                           wall_s=time.monotonic() - started, notices=notices)


def _unique(pairs: list[tuple[str, str | None]]) -> tuple[list[tuple[str, str | None]], list[str]]:
    """Each model (or model@provider) once: a repeat would generate, and pay, twice for the same
    tile. Returns the pairs in first-seen order and a notice per repeat dropped."""
    seen: dict[tuple[str, str | None], int] = {}
    for pair in pairs:
        seen[pair] = seen.get(pair, 0) + 1
    notices = [f"{m}{'@' + p if p else ''} was listed {n} times; generated once"
               for (m, p), n in seen.items() if n > 1]
    for notice in notices:
        logger.warning("compare: %s", notice)
    return list(seen), notices


def tile_from_result(model: str, result: ImageResult) -> Tile:
    img = result.images[0] if result.images else None
    return Tile(model=result.model or model, provider=result.provider,
                offer=result.plan.offer.key if result.plan is not None else None,
                cost_usd=result.cost_usd, cost_is_estimate=result.cost_is_estimate,
                latency_s=result.latency_s,
                seed=img.metadata.get("seed", img.seed) if img else None,
                size=f"{img.width}x{img.height}" if img else None,
                fates=[f.to_dict() for f in result.fates if f.kind.value != "honored"],
                simulated=result.simulated, image=img,
                error=None if img else "no image came back", error_type=None if img else "EmptyResult")


# -- drawing ---------------------------------------------------------------------------------------
def _font(size: int, bold: bool = False) -> Any:
    from PIL import ImageFont

    name = "DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf"
    for folder in ("/usr/share/fonts/truetype/dejavu", "/usr/share/fonts/TTF",
                   "/Library/Fonts", "C:/Windows/Fonts"):
        try:
            return ImageFont.truetype(f"{folder}/{name}", size)
        except OSError:
            continue
    return ImageFont.load_default(size=size)


def _usd(v: float | None) -> str:
    if v is None:
        return "cost unknown"
    return f"${v:.3g}" if v < 1 else f"${v:,.2f}"


def render_sheet(sheet: ComparisonSheet) -> Any:
    """The contact sheet as a Pillow image: a header, then one tile per model in a grid."""
    from PIL import Image, ImageDraw

    n = max(1, len(sheet.tiles))
    cols = min(n, 4)
    rows = (n + cols - 1) // cols
    tile_w, tile_h = _TILE, _TILE + _TEXT_H
    width = _MARGIN + cols * (tile_w + _MARGIN)
    height = _HEADER_H + rows * (tile_h + _MARGIN) + _MARGIN
    canvas = Image.new("RGB", (width, height), (246, 246, 243))
    draw = ImageDraw.Draw(canvas)
    f_title, f_bold, f_text, f_small = _font(17, True), _font(15, True), _font(13), _font(12)

    prompt = sheet.prompt if len(sheet.prompt) <= 110 else sheet.prompt[:107] + "…"
    draw.text((_MARGIN, 12), f"“{prompt}”", font=f_title, fill=(20, 20, 20))
    sub = (f"seed {sheet.seed if sheet.seed is not None else 'not fixed'} · quality {sheet.quality}"
           f" · {len(sheet.tiles)} models · total {_usd(sheet.cost_usd)}"
           + (f" of a ${sheet.budget_usd:,.2f} budget" if sheet.budget_usd is not None else "")
           + f" · {sheet.wall_s:.1f} s wall")
    draw.text((_MARGIN, 38), sub, font=f_text, fill=(70, 70, 70))
    if sheet.simulated:
        draw.text((width - _MARGIN, 40), "SIMULATED — no provider was called", font=f_bold,
                  fill=(176, 96, 0), anchor="ra")

    for i, tile in enumerate(sheet.tiles):
        x = _MARGIN + (i % cols) * (tile_w + _MARGIN)
        y = _HEADER_H + (i // cols) * (tile_h + _MARGIN)
        draw.rectangle((x - 1, y - 1, x + tile_w, y + tile_h), fill=(255, 255, 255),
                       outline=(210, 210, 205))
        _draw_image(canvas, draw, tile, x, y, f_text)
        _draw_caption(draw, tile, x + 8, y + _TILE + 8, tile_w - 16, f_bold, f_text, f_small)
    return canvas


def _draw_image(canvas: Any, draw: Any, tile: Tile, x: int, y: int, font: Any) -> None:
    if tile.image is None:
        draw.rectangle((x, y, x + _TILE - 1, y + _TILE - 1), fill=(235, 232, 232))
        label = "skipped (budget)" if tile.error_type == "BudgetExceeded" else "failed"
        draw.text((x + _TILE // 2, y + _TILE // 2), label, font=_font(22, True),
                  fill=(150, 40, 40), anchor="mm")
        return
    try:
        im = tile.image.to_pil().convert("RGB")
    except Exception:  # noqa: BLE001 - an unreadable image is drawn as such, the sheet still renders
        draw.text((x + 10, y + 10), "image could not be decoded", font=font, fill=(150, 40, 40))
        return
    im.thumbnail((_TILE, _TILE))
    canvas.paste(im, (x + (_TILE - im.width) // 2, y + (_TILE - im.height) // 2))


def _draw_caption(draw: Any, tile: Tile, x: int, y: int, w: int, f_bold: Any, f_text: Any,
                  f_small: Any) -> None:
    draw.text((x, y), tile.model, font=f_bold, fill=(20, 20, 20))
    y += 20
    cost = _usd(tile.cost_usd) + (" est." if tile.cost_is_estimate and tile.cost_usd is not None else "")
    skipped = (tile.error or "").startswith("skipped")
    facts = [tile.provider or ("nothing sent" if skipped else "provider unknown")]
    if tile.ok:
        facts += [cost, f"{tile.latency_s:.1f} s" if tile.latency_s is not None else "",
                  tile.size or ""]
    draw.text((x, y), " · ".join(f for f in facts if f), font=f_text, fill=(60, 60, 60))
    y += 19
    chars = max(20, w // 7)
    lines: list[tuple[str, tuple[int, int, int]]] = []
    if tile.error:
        lines += [(ln, (160, 30, 30)) for ln in textwrap.wrap(
            f"{tile.error_type}: {tile.error}" if tile.error_type else tile.error, chars)]
    for f in tile.fates:
        text = f"{f['control']} {f['kind']}"
        detail = f.get("delta") or f.get("reason")
        if detail:
            text += f": {detail}"
        color = (160, 30, 30) if f["kind"] == "dropped" else (150, 95, 0)
        lines += [(ln, color) for ln in textwrap.wrap(text, chars)]
    if tile.ok and not tile.fates:
        lines.append(("every control honored", (40, 120, 40)))
    room = (_TEXT_H - 47) // 15
    if len(lines) > room:
        lines = lines[:room - 1] + [(f"… {len(lines) - room + 1} more lines in the JSON",
                                     (90, 90, 90))]
    for text, color in lines:
        draw.text((x, y), text, font=f_small, fill=color)
        y += 15
