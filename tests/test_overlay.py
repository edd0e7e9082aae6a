"""Overlays: user YAML over the shipped catalog (prices, endpoints, disabled, private deployments)."""

from __future__ import annotations

import datetime as dt
import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_catalog_load import make_catalog, problems_of

import modelglass as mg
from modelglass.catalog import Catalog
from modelglass.catalog._overlay import OVERLAY_ENV, default_overlay_path
from modelglass.errors import CatalogError


def overlay(tmp_path: Path, text: str, name: str = "overlay.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture
def base(tmp_path: Path) -> Path:
    return make_catalog(tmp_path / "cat")


def test_overlay_changes_a_price_with_its_date_and_source(tmp_path: Path, base: Path) -> None:
    ov = overlay(tmp_path, """\
        as_of: 2026-11-29
        source: negotiated
        offers:
          toy@fal:
            price: {kind: per_image, usd: 0.004}
        """)
    cat = Catalog.load(base, overlays=[ov])
    view = cat.offer("toy@fal")
    assert view.estimate_cost(1024, 1024).usd == pytest.approx(0.004)
    assert (view.offer.as_of, view.offer.source) == (dt.date(2026, 11, 29), "negotiated")
    assert Catalog.load(base).offer("toy@fal").estimate_cost(1024, 1024).usd == pytest.approx(0.01)
    (change,) = [c for c in cat.overlay.changes if c.what == "price"]
    assert (change.offer, change.line) == ("toy@fal", 5)
    assert change.before == {"kind": "per_image", "usd": 0.01}
    assert change.after == {"kind": "per_image", "usd": 0.004}


def test_an_entry_date_wins_over_the_overlay_date(tmp_path: Path, base: Path) -> None:
    ov = overlay(tmp_path, """\
        as_of: 2026-11-29
        offers:
          toy@fal: {price: {kind: per_image, usd: 0.004}, as_of: 2026-10-01, source: S14}
        """)
    assert Catalog.load(base, overlays=[ov]).offer("toy@fal").offer.as_of == dt.date(2026, 10, 1)


def test_a_changed_price_without_a_date_is_refused(tmp_path: Path, base: Path) -> None:
    ov = overlay(tmp_path, """\
        offers:
          toy@fal:
            price: {kind: per_image, usd: 0.004}
        """)
    problems = problems_of_overlay(base, ov)
    assert problems == [f"{ov}:3: offers.toy@fal.price: a changed price needs its date: give as_of "
                        "here or at the top of the overlay"]


def problems_of_overlay(base: Path, *overlays: Path) -> list[str]:
    with pytest.raises(CatalogError) as info:
        Catalog.load(base, overlays=list(overlays))
    return info.value.problems


def test_overlay_errors_have_file_and_line(tmp_path: Path, base: Path) -> None:
    ov = overlay(tmp_path, """\
        as_of: 2026-11-29
        offers:
          toy@fall: {endpoint: x}
          toy@fal:
            price: {kind: per_image, usd: .nan}
        models:
          nope: {disabled: true}
        deployments:
          - model: toy
            provider: fal
            endpoint: my/app
            price: {kind: per_image, usd: 0.01}
        """)
    problems = problems_of_overlay(base, ov)
    assert f"{ov}:3: offers.toy@fall: no offer 'toy@fall' in the catalog; did you mean " \
           "'toy@fal'?" in problems
    assert any(p.startswith(f"{ov}:5: offers.toy@fal.price.usd: nan is not allowed")
               for p in problems)
    assert f"{ov}:7: models.nope: no model 'nope' in the catalog" in problems
    assert any(p.startswith(f"{ov}:9: deployments[0]: offer 'toy@fal' already exists")
               for p in problems)


def test_overlay_changes_an_endpoint(tmp_path: Path, base: Path) -> None:
    ov = overlay(tmp_path, "offers:\n  toy@fal: {endpoint: fal-ai/toy-v2}\n")
    cat = Catalog.load(base, overlays=[ov])
    assert cat.offer("toy@fal").endpoint == "fal-ai/toy-v2"
    assert [(c.what, c.before, c.after) for c in cat.overlay.changes] == [
        ("endpoint", "fal-ai/toy", "fal-ai/toy-v2")]


def test_disabled_offers_and_models_are_not_routed(tmp_path: Path, base: Path) -> None:
    ov = overlay(tmp_path, "offers:\n  toy@fal: {disabled: true, reason: legal said no}\n")
    cat = Catalog.load(base, overlays=[ov])
    assert [v.key for v in cat.offers()] == ["toy@fal-mp"]
    with pytest.raises(CatalogError, match="disabled by your catalog overlay .legal said no"):
        cat.offer("toy@fal")
    ov2 = overlay(tmp_path, "models:\n  toy: {disabled: true}\n", "m.yaml")
    assert Catalog.load(base, overlays=[ov2]).offers() == []


def test_private_deployment_is_an_extra_offer(tmp_path: Path, base: Path) -> None:
    ov = overlay(tmp_path, """\
        as_of: 2026-11-29
        deployments:
          - model: toy
            provider: replicate
            id: toy@my-deployment
            endpoint: my-team/toy-deployment
            price: {kind: gpu_seconds, seconds: 2.0}
            controls: {max_images_per_call: 1}
        """)
    cat = Catalog.load(base, overlays=[ov])
    view = cat.offer("toy@my-deployment")
    assert (view.provider, view.endpoint, view.offer.as_of) == (
        "replicate", "my-team/toy-deployment", dt.date(2026, 11, 29))
    assert view.controls.max_images_per_call == 1 and view.controls.seed is True  # merged
    assert [c.what for c in cat.overlay.changes] == ["added"]


def test_later_overlays_win(tmp_path: Path, base: Path) -> None:
    a = overlay(tmp_path, "as_of: 2026-11-01\noffers:\n  toy@fal: {price: {kind: per_image, usd: 0.5}}\n", "a.yaml")
    b = overlay(tmp_path, "as_of: 2026-11-02\noffers:\n  toy@fal: {price: {kind: per_image, usd: 0.2}}\n", "b.yaml")
    assert Catalog.load(base, overlays=[a, b]).offer("toy@fal").offer.price.usd == 0.2


def test_seen_endpoints_are_listed_and_never_routed(tmp_path: Path, base: Path) -> None:
    ov = overlay(tmp_path, "seen:\n  fal: [fal-ai/new-thing, fal-ai/toy]\n")
    cat = Catalog.load(base, overlays=[ov])
    assert cat.overlay.seen == {"fal": ["fal-ai/new-thing"]}  # fal-ai/toy is described
    assert all(v.endpoint != "fal-ai/new-thing" for v in cat.offers())


def test_missing_overlay_file_is_an_error(tmp_path: Path, base: Path) -> None:
    problems = problems_of_overlay(base, tmp_path / "nope.yaml")
    assert problems == [f"{tmp_path / 'nope.yaml'}:1: overlay file not found; check the path "
                        f"(or {OVERLAY_ENV})"]


def test_hostile_overlay_is_refused_like_a_catalog_file(tmp_path: Path, base: Path) -> None:
    ov = overlay(tmp_path, "seen: &a [*a]\n")
    assert "self-referencing alias" in problems_of_overlay(base, ov)[0]


def test_default_catalog_takes_the_user_overlay(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    shipped = Catalog.default()
    key = next(v.key for v in shipped.offers() if v.offer.price.kind.value == "per_image")
    ov = overlay(tmp_path, f"as_of: 2026-11-29\noffers:\n  {key}: {{price: {{kind: per_image, usd: 9.5}}}}\n")
    monkeypatch.setenv(OVERLAY_ENV, str(ov))
    assert default_overlay_path() == ov
    cat = Catalog.default()
    assert cat.offer(key).offer.price.usd == 9.5 and cat.overlay.files
    monkeypatch.setenv(OVERLAY_ENV, "")
    assert Catalog.default().offer(key).offer.price.usd != 9.5


def test_default_overlay_path_is_the_user_config_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    from platformdirs import user_config_dir

    monkeypatch.delenv(OVERLAY_ENV)
    assert default_overlay_path() == Path(user_config_dir("modelglass")) / "overlay.yaml"


def test_client_routes_with_the_overlay_price(tmp_path: Path, base: Path) -> None:
    ov = overlay(tmp_path, "as_of: 2026-11-29\noffers:\n  toy@fal: {price: {kind: per_image, usd: 0.001}}\n")
    client = mg.Client(catalog=Catalog.load(base, overlays=[ov]), available=["fal"])
    call = client.plan("a toy", model="toy", provider="fal")
    assert call.estimate.usd == pytest.approx(0.001)
    client.close()


def test_make_catalog_helper_still_loads_without_overlays(base: Path) -> None:
    assert problems_of is not None and Catalog.load(base).overlay.changes == []


def test_overlay_narrows_an_offers_controls_and_keeps_the_rest(tmp_path: Path, base: Path) -> None:
    ov = overlay(tmp_path, "offers:\n  toy@fal: {controls: {max_images_per_call: 2, "
                           "steps: {max: 40}}}\n")
    cat = Catalog.load(base, overlays=[ov])
    view = cat.offer("toy@fal")
    assert view.controls.max_images_per_call == 2
    assert (view.controls.steps.min, view.controls.steps.max) == (1, 40)  # type: ignore[union-attr]
    assert view.controls.seed is True
    assert {c.what for c in cat.overlay.changes} == {"controls"}


def test_explain_names_offers_the_overlay_disabled(tmp_path: Path, base: Path) -> None:
    ov = overlay(tmp_path, "offers:\n  toy@fal: {disabled: true, reason: legal said no}\n")
    client = mg.Client(catalog=Catalog.load(base, overlays=[ov]), available=["fal"])
    decision = client.route("a toy", model="toy", quality="hero", max_cost_usd=1.0)
    (rej,) = [r for r in decision.rejected if r.offer_key == "toy@fal"]
    assert rej.constraint == "overlay" and "legal said no" in rej.reason
    assert "disabled by your catalog overlay" in decision.explain()
    client.close()


def test_catalog_show_lists_offers_the_overlay_disabled(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import json as _json

    from typer.testing import CliRunner

    from modelglass.cli import app

    view = next(v for v in Catalog.default().offers() if v.model_id == "flux-dev")
    ov = overlay(tmp_path, f"offers:\n  {view.key}: {{disabled: true, reason: not cleared}}\n")
    monkeypatch.setenv(OVERLAY_ENV, str(ov))
    r = CliRunner().invoke(app, ["catalog", "show", "flux-dev", "--json"])
    data = _json.loads(r.output)
    assert data["disabled_offers"] == {view.key: "not cleared"}
    assert view.key not in [o["offer"] for o in data["offers"]]
    r = CliRunner().invoke(app, ["catalog", "show", "flux-dev"], env={"COLUMNS": "200"})
    assert f"{view.key}: disabled by your catalog overlay (not cleared)" in r.output


_leaf = (st.none() | st.booleans() | st.integers(-5, 5) | st.floats(allow_nan=True)
         | st.text(max_size=12) | st.sampled_from(["toy@fal", "toy", "fal", "2026-11-29",
                                                   "per_image", "disabled"]))
_keys = st.sampled_from(["offers", "models", "deployments", "seen", "as_of", "source", "price",
                         "kind", "usd", "toy@fal", "toy", "disabled", "endpoint", "model",
                         "provider", "controls", "x"])
_yamlish = st.recursive(_leaf, lambda inner: st.lists(inner, max_size=3)
                        | st.dictionaries(_keys, inner, max_size=4), max_leaves=12)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.dictionaries(_keys, _yamlish, max_size=4))
def test_any_overlay_loads_or_is_a_catalog_error(tmp_path: Path, base: Path,
                                                 data: dict[str, object]) -> None:
    import yaml

    ov = tmp_path / "fuzz.yaml"
    ov.write_text(yaml.safe_dump(data))
    try:
        Catalog.load(base, overlays=[ov])
    except CatalogError as exc:
        assert all(p.startswith((str(ov), str(base))) for p in exc.problems)


def test_a_single_overlay_path_may_be_given_bare(tmp_path: Path, base: Path) -> None:
    ov = overlay(tmp_path, "offers:\n  toy@fal: {endpoint: fal-ai/toy-v3}\n")
    assert Catalog.load(base, overlays=str(ov)).offer("toy@fal").endpoint == "fal-ai/toy-v3"  # type: ignore[arg-type]


def test_a_later_overlay_can_re_enable(tmp_path: Path, base: Path) -> None:
    a = overlay(tmp_path, "models:\n  toy: {disabled: true}\n", "a.yaml")
    b = overlay(tmp_path, "offers:\n  toy@fal: {disabled: false}\n", "b.yaml")
    cat = Catalog.load(base, overlays=[a, b])
    assert [v.key for v in cat.offers()] == ["toy@fal"]
    assert list(cat.disabled) == ["toy@fal-mp"]
    c = overlay(tmp_path, "models:\n  toy: {disabled: false}\n", "c.yaml")
    assert len(Catalog.load(base, overlays=[a, c]).offers()) == 2


def test_a_stale_synced_entry_is_ignored_with_a_warning(tmp_path: Path, base: Path,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    ov = overlay(tmp_path, "offers:\n  gone@fal: {disabled: true, source: sync}\n"
                           "  toy@fal: {endpoint: fal-ai/toy-v9, source: sync}\n")
    with caplog.at_level("WARNING", logger="modelglass"):
        cat = Catalog.load(base, overlays=[ov])
    assert cat.offer("toy@fal").endpoint == "fal-ai/toy-v9"
    assert "gone@fal is not in the catalog any more" in caplog.text
    mine = overlay(tmp_path, "offers:\n  gone@fal: {disabled: true}\n", "mine.yaml")
    assert "no offer 'gone@fal'" in problems_of_overlay(base, mine)[0]
