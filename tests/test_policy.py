"""Policy files: the shipped default is a policy file, users extend it, and every mistake is
reported as file:line with the valid names."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from _routing_models import TODAY, catalog, good, model, offer
from typer.testing import CliRunner

import modelglass as mg
from modelglass.errors import CatalogError, InvalidRequest
from modelglass.request import ImageRequest
from modelglass.routing import Policy, route
from modelglass.routing._policy import default_policy_path

ISSUE_EXAMPLE = """\
extends: default
axes:
  social-card: {extends: thumbnail, size: 1200x630, weights: {text_rendering: 0.4}, max_cost_usd: 0.02}
  hero: {min: {prompt_adherence: 8}, cost_weight: 0.2}
providers: {allow: [fal, openai], prefer: {fal: 0.05}}
require: {commercial_use: true}
limits: {max_latency_p90_s: 30}
"""


def write(tmp_path: Path, text: str, name: str = "policy.yaml") -> Path:
    p = tmp_path / name
    p.write_text(textwrap.dedent(text), encoding="utf-8")
    return p


def problems(path: Path, cat: mg.Catalog | None = None) -> list[str]:
    with pytest.raises(CatalogError) as e:
        Policy.load(path, catalog=cat)
    return e.value.problems


def test_policy_is_public_and_the_default_is_a_shipped_file() -> None:
    assert "Policy" in mg.__all__ and mg.Policy is Policy
    path = default_policy_path()
    assert path.is_file() and path.parent.name == "policies"
    default = Policy.default()
    assert default.source is not None and default.source.endswith("default.yaml")
    # The file states exactly the built-in rules: reading it is reading what routing does.
    assert default == Policy()
    assert default.scoring.text_bonus == 0.03 and default.health.failures == 3


def test_the_catalog_loader_ignores_the_policies_folder() -> None:
    cat = mg.Catalog.load(default_policy_path().parent.parent)
    assert set(cat.quality_axes) >= {"draft", "thumbnail", "hero", "print"}


def test_the_issue_example_loads_and_resolves_its_axes(tmp_path: Path) -> None:
    policy = Policy.load(write(tmp_path, ISSUE_EXAMPLE))
    cat = mg.Catalog.default()
    card = policy.quality_axis("social-card", cat)
    thumb = cat.quality_axes["thumbnail"]
    assert card.target_size == "1200x630" and card.max_cost_usd == 0.02
    assert card.weights == {**thumb.weights, "text_rendering": 0.4}
    assert card.cost_weight == thumb.cost_weight and card.minimums == thumb.minimums
    hero = policy.quality_axis("hero", cat)
    assert hero.minimums["prompt_adherence"] == 8 and hero.cost_weight == 0.2
    assert hero.weights == cat.quality_axes["hero"].weights
    assert policy.providers.allow == ["fal", "openai"] and policy.providers.prefer == {"fal": 0.05}
    assert policy.require.commercial_use is True and policy.limits.max_latency_p90_s == 30
    assert policy.axis_names(cat)[-1] == "social-card"
    # Everything it does not name comes from the default policy it extends.
    assert policy.scoring == Policy.default().scoring and policy.tie_break == ("cost", "offer")


def test_every_problem_is_reported_with_its_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, """\
        extends: default
        axes:
          social-card: {extends: thumbnale, size: 1200x630, weights: {text_rendring: 0.4}}
          hero:
            min: {prompt_adherence: 8}
            cost_weight: 2
        providers: {allow: [fal, opneai], prefer: {fal: 0.05}}
        models: {deny: [flux-schnel]}
        require: {commercial: true}
        limits: {max_latency_p90_s: -1}
        tie_break: [cost, price]
        """)
    got = problems(path)
    f = str(path)
    expected_starts = [
        f"{f}:3: axes.social-card.weights.text_rendring: 'text_rendring' is not allowed",
        f"{f}:3: axes.social-card.extends: unknown quality axis 'thumbnale'; did you mean "
        "'thumbnail'? (valid: draft, thumbnail, hero, print, social-card)",
        f"{f}:6: axes.hero.cost_weight: must be ≤ 1",
        f"{f}:7: providers.allow[1]: unknown provider 'opneai'; did you mean 'openai'? "
        "(valid: fal, local, openai, replicate)",
        f"{f}:8: models.deny[0]: unknown model 'flux-schnel'; did you mean 'flux-schnell'?",
        f"{f}:9: require.commercial: unknown field; did you mean 'commercial_use'?",
        f"{f}:10: limits.max_latency_p90_s: must be > 0",
        f"{f}:11: tie_break[1]: 'price' is not allowed; expected one of 'cost', 'quality', "
        "'latency' or 'offer'",
    ]
    for start in expected_starts:
        assert any(p.startswith(start) for p in got), (start, got)
    assert len(got) == len(expected_starts)
    # Sorted by line, so a reader fixes the file top to bottom.
    lines = [int(p.split(":")[1]) for p in got]
    assert lines == sorted(lines)


def test_names_are_checked_against_the_catalog_the_policy_is_used_with(tmp_path: Path) -> None:
    cat = catalog(only_model=model(good()))
    path = write(tmp_path, "models: {prefer: {only-model: 0.1, other: 0.2}}\n")
    (msg,) = problems(path, cat)
    assert msg == (f"{path}:1: models.prefer.other: unknown model 'other' (valid: only-model)")
    # A policy built for another catalog is refused when routing with this one, with the names.
    policy = Policy({"models": {"deny": ["flux-dev"]}})
    with pytest.raises(CatalogError, match="unknown model 'flux-dev'.*valid: only-model"):
        route(ImageRequest(prompt="p", quality="hero"), cat, policy=policy, today=TODAY)


def test_a_new_axis_must_say_what_it_extends(tmp_path: Path) -> None:
    (msg,) = problems(write(tmp_path, "axes:\n  poster: {size: 1024x1536}\n"))
    assert msg.startswith(f"{tmp_path / 'policy.yaml'}:2: axes.poster: axis 'poster' is new: "
                          "add `extends:`")


def test_yaml_syntax_errors_have_a_line(tmp_path: Path) -> None:
    (msg,) = problems(write(tmp_path, "axes:\n  hero: {min: [8\nproviders: {}\n"))
    assert msg.startswith(f"{tmp_path / 'policy.yaml'}:") and "YAML syntax error" in msg


def test_min_and_minimums_together_is_an_error(tmp_path: Path) -> None:
    got = problems(write(tmp_path, "axes:\n  hero:\n    min: {speed: 1}\n"
                                   "    minimums: {speed: 2}\n"))
    assert any(":4: axes.hero.minimums: give either `min` or `minimums`" in p for p in got)


def test_a_policy_extends_another_file_and_the_nearest_wins(tmp_path: Path) -> None:
    write(tmp_path, """\
        axes:
          hero: {cost_weight: 0.5, min: {photorealism: 5}}
        providers: {deny: [local]}
        """, "base.yaml")
    child = write(tmp_path, """\
        extends: base.yaml
        axes:
          hero: {cost_weight: 0.3}
        """)
    policy = Policy.load(child)
    cat = mg.Catalog.default()
    hero = policy.quality_axis("hero", cat)
    assert hero.cost_weight == 0.3  # the child's value
    assert hero.minimums["photorealism"] == 5  # merged from the base file
    assert policy.providers.deny == ["local"]


def test_a_policy_that_extends_itself_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, "extends: policy.yaml\n")
    (msg,) = problems(path)
    assert msg.startswith(f"{path}:1: extends: policy 'policy.yaml' extends itself")


def test_a_missing_parent_file_is_named(tmp_path: Path) -> None:
    (msg,) = problems(write(tmp_path, "extends: team.yaml\n"))
    assert "extends: no policy file 'team.yaml'" in msg


def test_null_drops_a_minimum_and_zero_drops_a_weight(tmp_path: Path) -> None:
    policy = Policy.load(write(tmp_path, "axes:\n  draft: {min: {speed: null}, "
                                         "weights: {speed: 0}}\n"))
    draft = policy.quality_axis("draft", mg.Catalog.default())
    assert "speed" not in draft.minimums and "speed" not in draft.weights


def test_quality_accepts_the_policys_own_axis_and_names_them_when_unknown() -> None:
    cat = catalog(m=model(good()))
    policy = Policy({"axes": {"social-card": {"extends": "thumbnail", "size": "1200x630"}}})
    d = route(ImageRequest(prompt="p", quality="social-card"), cat, policy=policy, today=TODAY)
    assert d.quality == "social-card" and d.choice is not None
    assert (d.choice.call.planned.width, d.choice.call.planned.height) == (1200, 624)
    with pytest.raises(InvalidRequest, match="unknown quality axis 'social-cards'; did you mean "
                                             "'social-card'.*draft, thumbnail, hero, print, "
                                             "social-card") as info:
        route(ImageRequest(prompt="p", quality="social-cards"), cat, policy=policy, today=TODAY)
    assert info.value.field == "quality"  # the caller's quality, not the catalog's fault


def test_client_takes_a_policy_object_or_a_path_and_route_overrides_it(tmp_path: Path) -> None:
    cat = catalog(a=model(good(), [offer("fal", 0.01)]), b=model(good(), [offer("openai", 0.01)]))
    path = write(tmp_path, "providers: {allow: [openai]}\n")
    client = mg.Client(catalog=cat, policy=str(path), available=["fal", "openai"])
    assert client.route("p", quality="hero").choice.key == "b@openai"
    other = Policy({"providers": {"allow": ["fal"]}})
    assert client.route("p", quality="hero", policy=other).choice.key == "a@fal"
    assert mg.Client(catalog=cat, available=["fal", "openai"]).policy == Policy.default()


def test_policy_check_command_prints_the_axes_or_the_problems(tmp_path: Path) -> None:
    from modelglass.cli import app

    runner = CliRunner()
    ok = write(tmp_path, ISSUE_EXAMPLE)
    r = runner.invoke(app, ["policy", "check", str(ok)])
    assert r.exit_code == 0, r.output
    assert "social-card" in r.output and "1200x630" in r.output
    bad = write(tmp_path, "providers: {deny: [fall]}\n", "bad.yaml")
    r = runner.invoke(app, ["policy", "check", str(bad)])
    assert r.exit_code == 2
    assert "bad.yaml:1: providers.deny[0]: unknown provider 'fall'; did you mean 'fal'?" in \
        r.output.replace("\n", "")


def test_route_command_takes_a_policy(tmp_path: Path) -> None:
    from modelglass.cli import app

    path = write(tmp_path, "providers: {allow: [replicate]}\n")
    r = CliRunner().invoke(app, ["route", "a fox", "-q", "draft", "--policy", str(path),
                                 "--assume-available", "fal,openai,replicate", "--json"])
    data = __import__("json").loads(r.stdout)
    assert data["choice"] is None or data["choice"]["provider"] == "replicate"
    assert any(rej["constraint"] == "policy" and "fal" in rej["offer"] for rej in data["rejected"])


def test_policy_check_json_shows_the_resolved_axes(tmp_path: Path) -> None:
    import json

    from modelglass.cli import app

    r = CliRunner().invoke(app, ["policy", "check", str(write(tmp_path, ISSUE_EXAMPLE)), "--json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    card = data["axes_resolved"]["social-card"]
    assert card["target_size"] == "1200x630" and card["weights"]["text_rendering"] == 0.4
    assert data["providers"]["allow"] == ["fal", "openai"]
    assert data["scoring"]["text_bonus"] == 0.03 and data["name"] == "policy"


def test_a_policy_travels_by_pickle_to_ray_workers(tmp_path: Path) -> None:
    import pickle

    from modelglass.jobs._ray import _SETTINGS

    policy = Policy.load(write(tmp_path, ISSUE_EXAMPLE))
    copy = pickle.loads(pickle.dumps(policy))
    assert copy == policy and repr(copy) == repr(policy)
    assert copy.quality_axis("social-card", mg.Catalog.default()).target_size == "1200x630"
    # A worker rebuilds its client from the driver's settings: the policy is one of them.
    driver = mg.Client(policy=policy, available=["fal"])
    worker = mg.Client(available=["fal"], **pickle.loads(pickle.dumps(
        {k: getattr(driver, k) for k in _SETTINGS})))
    assert worker.policy == policy
    assert repr(Policy({"providers": {"deny": ["fal"]}})) != repr(Policy())


def test_the_readme_policy_and_the_example_policy_load_and_agree(tmp_path: Path) -> None:
    import re

    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Routing policies"):]
    block = re.search(r"```yaml\n(.*?)```", section, re.DOTALL)
    assert block is not None
    from_readme = Policy.load(write(tmp_path, block.group(1)))
    example = Policy.load(root / "examples" / "policy.yaml")
    assert from_readme == example  # the README shows the file the replay table was made with
