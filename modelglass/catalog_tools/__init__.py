"""Catalog tools: what needs the layers above the catalog (planning, routing, providers' HTTP).

- :func:`query` (``Catalog.query``, ``modelglass catalog query``): filters and sorts offers,
  judging ``supports=`` by planning a probe request on each offer.
- :func:`write_html` (``Catalog.write_html``) and :func:`plot_axis` (``Catalog.plot``): the
  catalog as a page and the cost/quality front the router considers.
- ``_sync``, ``_sync_schemas``, ``_sync_guard``, ``_sync_price`` (``modelglass catalog sync``):
  read providers' published prices and input schemas into your overlay.
- ``_verify``, ``_fal_bills`` (``modelglass catalog verify``): compare the catalog with what was
  observed and billed.

The catalog (:mod:`modelglass.catalog`, the bottom layer) never imports this package: importing
``modelglass`` imports it, and it registers ``query``, ``plot`` and ``write_html`` as the
implementations of those :class:`~modelglass.catalog.Catalog` methods, and each provider's
:meth:`~modelglass.providers.base.Provider.bill_line` as how the observed store records its
bills (see docs/architecture.md).
"""

from __future__ import annotations

import functools
from typing import Any

from ..catalog._bills import BillLine, register_bill_line
from ..catalog._catalog import register_tool
from ..providers import PROVIDER_CLASSES, provider_class
from ._html import write_html
from ._plot import plot_axis
from ._query import OfferRow, offer_supports, query

__all__ = ["OfferRow", "offer_supports", "plot_axis", "query", "write_html"]

register_tool("query", query)
register_tool("plot", plot_axis)
register_tool("write_html", write_html)


def _bill_line(provider: str, result: Any) -> BillLine | None:
    return provider_class(provider).bill_line(result)  # imports the provider module on first use


for _name in PROVIDER_CLASSES:
    register_bill_line(_name, functools.partial(_bill_line, _name))
