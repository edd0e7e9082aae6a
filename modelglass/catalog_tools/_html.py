"""``catalog html``: the catalog as one static, self-contained page.

No CDN, no fonts, no images from elsewhere: the page is HTML, a little CSS and a little vanilla
JavaScript (sorting and filtering), so it opens from disk on a machine without a network. Rows are
rendered here, in Python, with every catalog string escaped; the script only reorders and hides
them, so the page still reads with JavaScript off.

>>> import modelglass as mg
>>> from modelglass.catalog_tools._html import write_html
>>> write_html(mg.Catalog.default(), "catalog.html")                    # doctest: +SKIP
"""

from __future__ import annotations

import datetime as dt
import html
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import _clock
from .._paths import check_output_file
from ..catalog._schema import AXES
from ._query import offer_supports

if TYPE_CHECKING:
    from ..catalog import Catalog, OfferView

__all__ = ["render_html", "write_html"]

_SHORT = {"prompt_adherence": "adherence", "photorealism": "photoreal", "text_rendering": "text",
          "style_range": "style", "composition": "composition", "speed": "speed",
          "resolution": "resolution"}


def e(v: Any) -> str:
    return html.escape("" if v is None else str(v), quote=True)


def _usd(v: float | None) -> str:
    if v is None:
        return "unknown"
    return f"${v:.3g}" if v < 1 else f"${v:,.2f}"


def _num(v: float | None) -> str:
    # data-sort value: unknown sorts last whichever way (the script reads "" as unknown).
    return "" if v is None else repr(round(float(v), 6))


def write_html(catalog: Catalog, path: str | Path) -> Path:
    """Write :func:`render_html` to ``path`` (UTF-8); returns the path."""
    path = check_output_file(path, field="out", suffix=".html")
    path.write_text(render_html(catalog), encoding="utf-8")
    return path


def render_html(catalog: Catalog, *, today: dt.date | None = None) -> str:
    """The whole page as one string."""
    today = _clock.today(today)
    providers = catalog.providers
    parts = [_HEAD.replace("{{title}}", "modelglass catalog"),
             f"<h1>modelglass catalog</h1><p class=sub>{len(catalog.models)} models, "
             f"{len(catalog.offers())} offers, prices as of "
             f"{e(catalog.settings.as_of or 'the dates shown per offer')}. Scores are 0–10; "
             "<span class=est>*</span> marks an estimate from a stated prior, — no evidence. "
             "Click a column heading to sort; type to filter.</p>",
             _warnings(catalog, today), _controls(providers),
             _models_table(catalog, today), _offers_table(catalog, today), _evidence(catalog, today),
             _sources(catalog), _SCRIPT, "</body></html>\n"]
    return "\n".join(parts)


def _warnings(catalog: Catalog, today: dt.date) -> str:
    items = []
    for mid, m in catalog.models.items():
        lc = m.lifecycle
        if lc.status_on(today).value == "active":
            continue
        when = ""
        if lc.shutdown_on:
            days = (lc.shutdown_on - today).days
            when = (f"shut down on {lc.shutdown_on}" if days < 0 else
                    f"shuts down on {lc.shutdown_on} (in {days} days)")
        repl = ""
        if lc.replacement:
            name = e(lc.replacement)
            repl = (f"; use <a href='#m-{name}'>{name}</a>" if lc.replacement in catalog.models
                    else f"; use {name} (not in this catalog)")
        items.append(f"<li class='{e(lc.status_on(today).value)}'><a href='#m-{e(mid)}'><b>{e(mid)}</b></a>"
                     f" is {e(lc.status_on(today).value)}{', ' + when if when else ''}{repl}</li>")
    if not items:
        return ""
    return ("<section id=warnings><h2>Lifecycle warnings</h2><ul>" + "".join(items)
            + "</ul></section>")


def _controls(providers: list[str]) -> str:
    opts = "".join(f"<option value='{e(p)}'>{e(p)}</option>" for p in providers)
    return ("<div id=controls><label>Filter <input id=filter type=search "
            "placeholder='model, provider, licence…' autocomplete=off></label> "
            f"<label>Provider <select id=provider><option value=''>any</option>{opts}</select>"
            "</label> <label>Status <select id=status><option value=''>any</option>"
            "<option>active</option><option>deprecated</option><option>retired</option></select>"
            "</label> <label><input id=commercial type=checkbox> commercial use only</label>"
            " <span id=count></span></div>")


def _score_cell(s: Any) -> str:
    if s.value is None:
        return "<td class=num data-sort=''>—</td>"
    star = "<span class=est>*</span>" if s.estimated else ""
    return f"<td class=num data-sort='{_num(s.value)}'>{s.value:.1f}{star}</td>"


def _models_table(catalog: Catalog, today: dt.date) -> str:
    head = ("<tr><th data-type=text>model</th><th data-type=text>status</th>"
            "<th data-type=text>licence</th><th data-type=text>providers</th>"
            "<th data-type=num>cheapest 1024²</th>"
            + "".join(f"<th data-type=num title='{e(a)}'>{e(_SHORT[a])}</th>" for a in AXES)
            + "</tr>")
    rows = []
    for mid, m in catalog.models.items():
        sc = catalog.scores(mid)
        best = catalog.cheapest(mid)
        provs = sorted({o.provider for o in m.offers})
        lic = m.licence
        commercial = {True: "yes", False: "no", None: "unverified"}[lic.commercial_use]
        cheap = (f"<td class=num data-sort='{_num(best[1].usd)}'>{_usd(best[1].usd)} "
                 f"<small>{e(best[0].provider)}</small></td>" if best else
                 "<td class=num data-sort=''>unknown</td>")
        rows.append(
            f"<tr data-providers='{e(' '.join(provs))}' data-status='{e(m.lifecycle.status_on(today).value)}'"
            f" data-commercial='{commercial}'>"
            f"<td data-sort='{e(mid)}'><a href='#m-{e(mid)}'>{e(mid)}</a><br>"
            f"<small>{e(m.name)}</small></td>"
            f"<td><span class='badge {e(m.lifecycle.status_on(today).value)}'>{e(m.lifecycle.status_on(today).value)}"
            f"</span></td><td>{e(lic.id)}<br><small>commercial: {commercial}</small></td>"
            f"<td>{e(', '.join(provs))}</td>{cheap}"
            + "".join(_score_cell(sc[a]) for a in AXES) + "</tr>")
    return ("<section><h2>Models</h2><table id=models class=sortable><thead>" + head
            + "</thead><tbody>" + "".join(rows) + "</tbody></table></section>")


def _offer_support(catalog: Catalog, view: OfferView, control: str) -> str:
    v = offer_supports(catalog, view, control)
    return {True: "<td class=yes>yes</td>", False: "<td class=no>no</td>",
            None: "<td>?</td>"}[v]


def _offers_table(catalog: Catalog, today: dt.date) -> str:
    head = ("<tr><th data-type=text>offer</th><th data-type=text>provider</th>"
            "<th data-type=text>status</th><th data-type=num>$/image 1024²</th>"
            "<th data-type=text>price basis</th><th data-type=num>p50 latency</th>"
            "<th data-type=text>negative prompt</th><th data-type=text>seed</th>"
            "<th data-type=text>as of</th><th data-type=text>source</th></tr>")
    rows = []
    for v in catalog.offers():
        m = v.model
        est = v.estimate_cost(1024, 1024, 1)
        lat = v.offer.latency.p50_s if v.offer.latency else None
        commercial = {True: "yes", False: "no", None: "unverified"}[m.licence.commercial_use]
        rows.append(
            f"<tr data-providers='{e(v.provider)}' data-status='{e(m.lifecycle.status_on(today).value)}'"
            f" data-commercial='{commercial}'>"
            f"<td><a href='#m-{e(v.model_id)}'>{e(v.key)}</a></td><td>{e(v.provider)}</td>"
            f"<td><span class='badge {e(m.lifecycle.status_on(today).value)}'>{e(m.lifecycle.status_on(today).value)}"
            f"</span></td><td class=num data-sort='{_num(est.per_image_usd)}'>"
            f"{_usd(est.per_image_usd)}{'~' if est.approximate else ''}</td>"
            f"<td><small>{e(est.basis)}</small></td>"
            f"<td class=num data-sort='{_num(lat)}'>{'—' if lat is None else f'{lat:g} s'}</td>"
            + _offer_support(catalog, v, "negative_prompt") + _offer_support(catalog, v, "seed")
            + f"<td class=num>{e(v.offer.as_of)}</td><td>{_tags(v.offer.source)}</td></tr>")
    return ("<section><h2>Offers</h2><p class=sub>negative prompt / seed: whether this offer "
            "really sends it (judged by planning a request on it, not from the model's "
            "abilities); ~ price approximated.</p><table id=offers class=sortable><thead>" + head
            + "</thead><tbody>" + "".join(rows) + "</tbody></table></section>")


def _tags(source: str | None) -> str:
    import re

    ids = re.findall(r"[A-Z]+\d+", source or "")
    if not ids:
        return e(source)
    return " ".join(f"<a class=src href='#s-{e(i)}'>[{e(i)}]</a>" for i in ids)


def _evidence(catalog: Catalog, today: dt.date) -> str:
    out = ["<section><h2>Evidence behind each score</h2>"]
    for mid, m in catalog.models.items():
        sc = catalog.scores(mid)
        items = []
        for a in AXES:
            s = sc[a]
            if s.evidence:
                ev = "; ".join(f"{e(x.metric)} = {x.value:g} {_tags(x.source)}"
                               + (f" <small>({e(x.note)})</small>" if x.note else "")
                               for x in s.evidence)
            else:
                ev = e(s.reason or "no evidence")
            items.append(f"<tr><th>{e(a)}</th><td class=num>{e(str(s))}</td><td>{ev}</td>"
                         f"<td><small>{e(s.formula)}</small></td></tr>")
        lc = m.lifecycle
        warn = ""
        if lc.status_on(today).value != "active":
            warn = (f"<p class='warn {e(lc.status_on(today).value)}'>{e(lc.status_on(today).value)}"
                    + (f", shutdown {e(lc.shutdown_on)}" if lc.shutdown_on else "")
                    + (f"; replacement {e(lc.replacement)}" if lc.replacement else "") + "</p>")
        out.append(f"<details id='m-{e(mid)}' data-model='{e(mid)}'><summary><b>{e(mid)}</b> — "
                   f"{e(m.name)} <small>({e(m.family)})</small></summary>{warn}"
                   "<table class=evidence><tr><th>axis</th><th>score</th><th>evidence [source]"
                   "</th><th>formula</th></tr>" + "".join(items) + "</table>"
                   + (f"<p><small>{e(m.notes)}</small></p>" if m.notes else "") + "</details>")
    out.append("</section>")
    return "".join(out)


def _sources(catalog: Catalog) -> str:
    rows = "".join(f"<tr id='s-{e(k)}'><th>{e(k)}</th><td>{e(v)}</td></tr>"
                   for k, v in catalog.settings.sources.items())
    return ("<section><h2>Sources</h2><p class=sub>[P] primary, [S] secondary, [E] estimate, "
            "[K] known problem.</p><table class=sources>" + rows + "</table></section>")


_HEAD = """<!doctype html>
<html lang=en><head><meta charset=utf-8>
<meta name=viewport content="width=device-width, initial-scale=1">
<title>{{title}}</title>
<style>
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px;color:#1d1d1f;
background:#fbfbf9}
h1{margin:0 0 4px}h2{margin:28px 0 8px;font-size:18px}.sub{color:#555;margin:4px 0 10px}
table{border-collapse:collapse;width:100%;background:#fff}
th,td{border-bottom:1px solid #e4e4e0;padding:4px 8px;text-align:left;vertical-align:top}
thead th{position:sticky;top:46px;background:#f0f0ec;cursor:pointer;user-select:none;white-space:nowrap}
thead th[aria-sort=ascending]::after{content:" ▲"}thead th[aria-sort=descending]::after{content:" ▼"}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.est{color:#b06000;font-weight:bold}.yes{color:#207a35}.no{color:#a0302a}
.badge{padding:1px 6px;border-radius:8px;font-size:12px;background:#e6f2e6}
.badge.deprecated{background:#fff0c8}.badge.retired{background:#f6d6d3}
#warnings ul{padding-left:20px}#warnings li.deprecated{color:#7a5200}#warnings li.retired{color:#a0302a}
.warn{font-weight:bold}.warn.deprecated{color:#7a5200}.warn.retired{color:#a0302a}
#controls{position:sticky;top:0;z-index:2;background:#fbfbf9;padding:8px 0;display:flex;gap:16px;
flex-wrap:wrap;align-items:center}#controls input[type=search]{width:260px;padding:3px 6px}
#count{color:#555}details{margin:4px 0;background:#fff;border:1px solid #e4e4e0;padding:4px 8px}
details table.evidence th{width:150px}#offers td:first-child,#models td:first-child a{white-space:nowrap}small{color:#666}a.src{text-decoration:none}
tr:target,details:target{outline:2px solid #f0b400}
</style></head><body>"""

_SCRIPT = """<script>
(function () {
  "use strict";
  var tables = document.querySelectorAll("table.sortable");
  function cellValue(row, i, type) {
    var cell = row.cells[i];
    if (!cell) { return null; }
    if (type === "num") {
      var raw = cell.getAttribute("data-sort");
      return raw === null || raw === "" ? null : parseFloat(raw);
    }
    var key = cell.getAttribute("data-sort");
    return (key !== null ? key : cell.textContent.trim()).toLowerCase();
  }
  function sortBy(table, i, th) {
    var type = th.getAttribute("data-type");
    var dir = th.getAttribute("aria-sort") === "ascending" ? "descending" : "ascending";
    table.querySelectorAll("thead th").forEach(function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", dir);
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = cellValue(a, i, type), y = cellValue(b, i, type);
      if (x === null && y === null) { return 0; }
      if (x === null) { return 1; }          /* unknown last, either way */
      if (y === null) { return -1; }
      var c = x < y ? -1 : (x > y ? 1 : 0);
      return dir === "ascending" ? c : -c;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  }
  tables.forEach(function (table) {
    table.querySelectorAll("thead th").forEach(function (th, i) {
      th.addEventListener("click", function () { sortBy(table, i, th); });
    });
  });
  var filter = document.getElementById("filter"), provider = document.getElementById("provider");
  var status = document.getElementById("status"), commercial = document.getElementById("commercial");
  var count = document.getElementById("count");
  function apply() {
    var words = filter.value.toLowerCase().split(/\\s+/).filter(Boolean);
    var p = provider.value, s = status.value, c = commercial.checked, shown = [];
    tables.forEach(function (table) {
      var n = 0;
      Array.prototype.forEach.call(table.tBodies[0].rows, function (row) {
        var text = row.textContent.toLowerCase();
        var ok = words.every(function (w) { return text.indexOf(w) >= 0; })
          && (!p || (" " + row.getAttribute("data-providers") + " ").indexOf(" " + p + " ") >= 0)
          && (!s || row.getAttribute("data-status") === s)
          && (!c || row.getAttribute("data-commercial") === "yes");
        row.hidden = !ok;
        if (ok) { n += 1; }
      });
      shown.push(n + " " + table.id);
    });
    count.textContent = "showing " + shown.join(", ");
  }
  [filter, provider, status, commercial].forEach(function (el) {
    el.addEventListener("input", apply);
    el.addEventListener("change", apply);
  });
  apply();
})();
</script>"""
