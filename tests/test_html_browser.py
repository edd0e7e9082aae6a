"""`catalog html`: one self-contained page, opened in Debian's chromium (headless, driven by
playwright; no browser is downloaded): it loads without console errors or network requests,
sorting and filtering work, and evidence, sources and lifecycle warnings are on it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

import modelglass as mg
from modelglass.catalog_tools._html import render_html
from modelglass.cli import app

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


def test_page_is_self_contained_and_escapes_catalog_text() -> None:
    page = render_html(mg.Catalog.default())
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)  # no CDN, no remote asset
    assert "<script src" not in page and "@import" not in page
    assert "FLUX.1 [dev]" in page  # names with brackets as written
    assert "<li class='deprecated'>" in page or "<li class='retired'>" in page


@pytest.fixture(scope="module")
def page_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("html") / "catalog.html"
    r = CliRunner().invoke(app, ["catalog", "html", "--out", str(path)])
    assert r.exit_code == 0, r.output
    return path


def _numbers(page, table: str, column: int) -> list[float | None]:
    cells = page.eval_on_selector_all(
        f"#{table} tbody tr:not([hidden]) td:nth-child({column})",
        "cells => cells.map(c => c.getAttribute('data-sort'))")
    return [None if c in (None, "") else float(c) for c in cells]


def test_the_page_loads_sorts_and_filters_in_chromium(page_file: Path) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page()
            errors: list[str] = []
            requests: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("request", lambda r: requests.append(r.url))
            page.goto(page_file.as_uri())
            page.wait_for_load_state("load")
            total = page.locator("#offers tbody tr").count()
            assert total == len(mg.Catalog.default().offers())
            assert "showing" in page.inner_text("#count")

            # Sort offers by $/image (4th column): ascending, unknown last; then descending.
            head = page.locator("#offers thead th").nth(3)
            head.click()
            assert head.get_attribute("aria-sort") == "ascending"
            costs = _numbers(page, "offers", 4)
            known = [c for c in costs if c is not None]
            assert known == sorted(known) and costs[:len(known)] == known
            head.click()
            costs = _numbers(page, "offers", 4)
            known = [c for c in costs if c is not None]
            assert known == sorted(known, reverse=True) and costs[:len(known)] == known

            # Sort models by name, text order.
            page.locator("#models thead th").nth(0).click()
            names = page.eval_on_selector_all("#models tbody tr td:first-child a",
                                              "as => as.map(a => a.textContent)")
            assert names == sorted(names)

            # Filter by text, by provider and by status.
            page.fill("#filter", "flux")
            visible = page.eval_on_selector_all("#offers tbody tr:not([hidden]) td:first-child",
                                                "cs => cs.map(c => c.textContent)")
            assert visible and all("flux" in v for v in visible) and len(visible) < total
            page.fill("#filter", "")
            page.select_option("#provider", "openai")
            providers = page.eval_on_selector_all(
                "#offers tbody tr:not([hidden]) td:nth-child(2)", "cs => cs.map(c => c.textContent)")
            assert providers and set(providers) == {"openai"}
            page.select_option("#provider", "")
            page.select_option("#status", "retired")
            statuses = page.eval_on_selector_all("#models tbody tr:not([hidden])",
                                                 "rs => rs.map(r => r.dataset.status)")
            assert statuses and set(statuses) == {"retired"}

            # Evidence with its source is one click away.
            page.locator("details[data-model='flux-dev'] summary").click()
            evidence = page.inner_text("details[data-model='flux-dev']")
            assert re.search(r"\[S\d+\]", evidence)
            assert page.locator("#s-S40").count() == 1
            assert page.locator("#warnings li").count() >= 1

            assert errors == []
            assert all(u.startswith("file://") for u in requests), requests
        finally:
            browser.close()
