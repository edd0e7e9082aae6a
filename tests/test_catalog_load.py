"""Loading catalog YAML: every problem is reported as file:line: field.path: message, all at once."""

from __future__ import annotations

import re
import shutil
import textwrap
from pathlib import Path

import pytest

from modelglass.catalog import Catalog, default_catalog_dir
from modelglass.errors import CatalogError

# Line numbers below refer to this text (line 1 is "models:").
TOY = """\
models:
  toy:
    name: Toy
    family: toy
    licence: {id: mit}
    controls: {seed: true, steps: {min: 1, max: 50, default: 28}}
    geometry:
      sizes:
        - 1024x1024
        - 512x512
    offers:
      - provider: fal
        endpoint: fal-ai/toy
        price: {kind: per_image, usd: 0.01}
        as_of: 2026-01-01
        source: S14
      - provider: fal
        id: toy@fal-mp
        endpoint: fal-ai/toy-mp
        price:
          kind: per_megapixel
          usd_per_megapixel: 0.02
        as_of: 2026-01-01
        source: S14
"""


def make_catalog(root: Path, models: str = TOY, *, quality: str | None = None,
                 settings: str | None = None, extra: dict[str, str] | None = None) -> Path:
    """A catalog directory: the default settings/quality unless given, and models/toy.yaml."""
    (root / "models").mkdir(parents=True)
    default = default_catalog_dir()
    if settings is None:
        shutil.copy(default / "settings.yaml", root / "settings.yaml")
    else:
        (root / "settings.yaml").write_text(settings)
    if quality is None:
        shutil.copy(default / "quality.yaml", root / "quality.yaml")
    else:
        (root / "quality.yaml").write_text(quality)
    (root / "models" / "toy.yaml").write_text(models)
    for name, text in (extra or {}).items():
        (root / "models" / name).write_text(text)
    return root


def problems_of(path: Path) -> list[str]:
    with pytest.raises(CatalogError) as info:
        Catalog.load(path)
    return info.value.problems


def edit(text: str, old: str, new: str) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


# --- a valid toy catalog --------------------------------------------------------------------------

def test_toy_catalog_loads(tmp_path: Path) -> None:
    cat = Catalog.load(make_catalog(tmp_path))
    assert list(cat.models) == ["toy"]
    assert [v.key for v in cat.offers()] == ["toy@fal", "toy@fal-mp"]
    assert cat.sources == [str(tmp_path / n) for n in
                           ("settings.yaml", "quality.yaml", "models/toy.yaml")]


# --- one mistake each: exact file, line and field path ----------------------------------------------

def test_negative_price_names_file_line_and_field(tmp_path: Path) -> None:
    root = make_catalog(tmp_path, edit(TOY, "usd_per_megapixel: 0.02", "usd_per_megapixel: -0.02"))
    assert problems_of(root) == [
        f"{root}/models/toy.yaml:22: models.toy.offers[1].price.usd_per_megapixel: must be ≥ 0"]


def test_unknown_provider_suggests_the_close_one(tmp_path: Path) -> None:
    root = make_catalog(tmp_path, edit(TOY, "- provider: fal\n        endpoint: fal-ai/toy\n",
                                       "- provider: fol\n        endpoint: fal-ai/toy\n"))
    (problem,) = problems_of(root)
    assert problem.startswith(f"{root}/models/toy.yaml:12: models.toy.offers[0].provider: "
                              "unknown provider 'fol'")
    assert "did you mean 'fal'?" in problem


def test_replacement_must_be_a_model_in_the_catalog(tmp_path: Path) -> None:
    models = edit(TOY, "    licence: {id: mit}\n",
                  "    licence: {id: mit}\n    lifecycle:\n      status: retired\n"
                  "      replacement: toy-9000\n")
    root = make_catalog(tmp_path, models)
    assert problems_of(root) == [
        f"{root}/models/toy.yaml:8: models.toy.lifecycle.replacement: "
        "replacement 'toy-9000' is not a model in this catalog"]


def test_retired_model_without_replacement_or_notes_is_refused(tmp_path: Path) -> None:
    models = edit(TOY, "    licence: {id: mit}\n",
                  "    licence: {id: mit}\n    lifecycle:\n      status: retired\n")
    root = make_catalog(tmp_path, models)
    (problem,) = problems_of(root)
    assert problem.startswith(f"{root}/models/toy.yaml:7: models.toy.lifecycle.status: "
                              "a retired model must name a `replacement`")
    # Saying why in notes is enough.
    fixed = edit(models, "    family: toy\n", "    family: toy\n    notes: no successor exists\n")
    (root / "models" / "toy.yaml").write_text(fixed)
    assert Catalog.load(root).models["toy"].lifecycle.status.value == "retired"


def test_bad_size_string_points_at_the_item(tmp_path: Path) -> None:
    root = make_catalog(tmp_path, edit(TOY, "- 512x512", "- 512*512"))
    assert problems_of(root) == [
        f"{root}/models/toy.yaml:10: models.toy.geometry.sizes[1]: "
        "size '512*512' must be WIDTHxHEIGHT, e.g. 1024x1024"]


def test_yaml_syntax_error_gives_file_and_line(tmp_path: Path) -> None:
    root = make_catalog(tmp_path, edit(TOY, "price: {kind: per_image, usd: 0.01}",
                                       "price: {kind: per_image, usd: 0.01"))
    (problem,) = problems_of(root)
    assert problem.startswith(f"{root}/models/toy.yaml:15: YAML syntax error")


def test_duplicate_key_is_refused_with_both_lines(tmp_path: Path) -> None:
    root = make_catalog(tmp_path, edit(TOY, "    family: toy\n", "    family: toy\n    name: Toy 2\n"))
    assert problems_of(root) == [
        f"{root}/models/toy.yaml:5: models.toy.name: duplicate key 'name' (first at line 3); "
        "remove one"]


def test_unknown_axis_in_quality_weights(tmp_path: Path) -> None:
    quality = (default_catalog_dir() / "quality.yaml").read_text()
    quality = edit(quality, "weights: {prompt_adherence: 1.0, speed: 1.5}",
                   "weights: {prompt_adherance: 1.0, speed: 1.5}")
    line = quality.splitlines().index("    weights: {prompt_adherance: 1.0, speed: 1.5}") + 1
    root = make_catalog(tmp_path, quality=quality)
    (problem,) = problems_of(root)
    assert problem.startswith(f"{root}/quality.yaml:{line}: axes.draft.weights.prompt_adherance: "
                              "'prompt_adherance' is not allowed; expected one of ")
    assert "'prompt_adherence'" in problem


def test_missing_quality_axis_is_a_problem(tmp_path: Path) -> None:
    quality = (default_catalog_dir() / "quality.yaml").read_text()
    quality = quality[:quality.index("  print:")]
    root = make_catalog(tmp_path, quality=quality)
    (problem,) = problems_of(root)
    assert problem.startswith(f"{root}/quality.yaml:")
    assert "axes: quality axis 'print' is missing" in problem


def test_unknown_field_suggests_the_right_name(tmp_path: Path) -> None:
    root = make_catalog(tmp_path, edit(TOY, "endpoint: fal-ai/toy\n", "endpont: fal-ai/toy\n"))
    got = problems_of(root)
    assert f"{root}/models/toy.yaml:13: models.toy.offers[0].endpont: unknown field; " \
           "did you mean 'endpoint'?" in got
    assert f"{root}/models/toy.yaml:12: models.toy.offers[0].endpoint: is required but missing" in got


def test_bad_date_is_explained(tmp_path: Path) -> None:
    root = make_catalog(tmp_path, edit(TOY, "as_of: 2026-01-01", "as_of: last week"))
    assert problems_of(root) == [
        f"{root}/models/toy.yaml:15: models.toy.offers[0].as_of: 'last week' is not a date; "
        "write it as YYYY-MM-DD"]


def test_price_newer_than_the_catalog_date_is_refused(tmp_path: Path) -> None:
    root = make_catalog(tmp_path, edit(TOY, "as_of: 2026-01-01", "as_of: 2099-01-01"))
    catalog_date = Catalog.load(make_catalog(tmp_path / "ok")).settings.as_of
    assert problems_of(root) == [
        f"{root}/models/toy.yaml:15: models.toy.offers[0].as_of: as_of 2099-01-01 is after the "
        f"catalog date {catalog_date} (settings.yaml as_of)"]


def test_unknown_source_id_is_refused(tmp_path: Path) -> None:
    root = make_catalog(tmp_path, edit(TOY, "source: S14\n      - provider", "source: S999\n      - provider"))
    (problem,) = problems_of(root)
    assert problem.startswith(f"{root}/models/toy.yaml:16: models.toy.offers[0].source: "
                              "source 'S999' is not in settings.yaml sources")


def test_unknown_evidence_metric_suggests_the_right_one(tmp_path: Path) -> None:
    models = edit(TOY, "    licence: {id: mit}\n",
                  "    licence: {id: mit}\n    evidence:\n"
                  "      - {metric: genevel, value: 0.5, source: S43}\n")
    root = make_catalog(tmp_path, models)
    assert problems_of(root) == [
        f"{root}/models/toy.yaml:7: models.toy.evidence[0].metric: unknown metric 'genevel'; "
        "did you mean 'geneval'?"]


def test_offer_override_must_stay_consistent_with_the_model(tmp_path: Path) -> None:
    # The model's default is 28 steps; an offer capping steps at 12 must give its own default.
    models = edit(TOY, "        source: S14\n      - provider: fal",
                  "        source: S14\n        controls: {steps: {max: 12}}\n      - provider: fal")
    root = make_catalog(tmp_path, models)
    (problem,) = problems_of(root)
    assert problem.startswith(f"{root}/models/toy.yaml:17: models.toy.offers[0].controls.steps: "
                              "after merging with the model's controls: default 28.0 is above max 12.0")


def test_duplicate_offer_keys_are_refused(tmp_path: Path) -> None:
    root = make_catalog(tmp_path, edit(TOY, "        id: toy@fal-mp\n", ""))
    (problem,) = problems_of(root)
    assert problem.startswith(f"{root}/models/toy.yaml:17: models.toy.offers[1]: duplicate offer "
                              f"key 'toy@fal' (first at {root}/models/toy.yaml:12)")


def test_local_offer_needs_pipeline_and_a_hub_repo_id(tmp_path: Path) -> None:
    models = edit(TOY, "- provider: fal\n        endpoint: fal-ai/toy\n",
                  "- provider: local\n        endpoint: not a repo\n")
    root = make_catalog(tmp_path, models)
    assert problems_of(root) == [
        f"{root}/models/toy.yaml:12: models.toy.offers[0]: a local offer must set `pipeline` "
        "(the diffusers class, e.g. StableDiffusionXLPipeline)",
        f"{root}/models/toy.yaml:13: models.toy.offers[0].endpoint: 'not a repo' is not a "
        "Hugging Face repo id (owner/name)",
    ]


def test_deprecation_dates_must_be_in_order(tmp_path: Path) -> None:
    models = edit(TOY, "    licence: {id: mit}\n",
                  "    licence: {id: mit}\n    notes: going away\n    lifecycle:\n"
                  "      status: deprecated\n      deprecated_on: 2026-06-01\n"
                  "      shutdown_on: 2026-03-01\n")
    root = make_catalog(tmp_path, models)
    assert f"{root}/models/toy.yaml:10: models.toy.lifecycle.shutdown_on: shutdown_on 2026-03-01 " \
           "is before deprecated_on 2026-06-01" in problems_of(root)


def test_aspect_ratio_keys_stay_text(tmp_path: Path) -> None:
    # YAML 1.1 would read an unquoted 16:9 as the base-60 integer 969.
    models = edit(TOY, "      sizes:\n        - 1024x1024\n        - 512x512\n",
                  "      aspect_ratios:\n        16:9: 1344x768\n        1:1: 1024x1024\n")
    cat = Catalog.load(make_catalog(tmp_path, models))
    assert cat.models["toy"].geometry.aspect_ratios == {"16:9": "1344x768", "1:1": "1024x1024"}


def test_yaml_anchors_and_merge_keys_work(tmp_path: Path) -> None:
    models = "_shared:\n  - &lic {id: mit, open_weights: true}\n" + edit(
        TOY, "licence: {id: mit}", "licence: {<<: *lic, open_weights: false}")
    cat = Catalog.load(make_catalog(tmp_path, models))
    assert cat.models["toy"].licence.open_weights is False


# --- many problems at once ------------------------------------------------------------------------

def test_all_problems_across_files_are_reported_together(tmp_path: Path) -> None:
    models = edit(TOY, "usd_per_megapixel: 0.02", "usd_per_megapixel: -1")
    models = edit(models, "- provider: fal\n        endpoint: fal-ai/toy\n",
                  "- provider: nope\n        endpoint: fal-ai/toy\n")
    other = "models:\n  toy:\n    name: again\n"     # duplicate id (and an incomplete model)
    broken = "models: [\n"                            # syntax error
    root = make_catalog(tmp_path, models, extra={"zother.yaml": other, "zz.yaml": broken})
    with pytest.raises(CatalogError) as info:
        Catalog.load(root)
    got = info.value.problems
    assert f"{root}/models/toy.yaml:22: models.toy.offers[1].price.usd_per_megapixel: must be ≥ 0" in got
    assert any(p.startswith(f"{root}/models/toy.yaml:12: models.toy.offers[0].provider: "
                            "unknown provider 'nope'") for p in got)
    assert any(p.startswith(f"{root}/models/zother.yaml:2: models.toy: model id 'toy' is already "
                            f"defined at {root}/models/toy.yaml:2") for p in got)
    assert any(p.startswith(f"{root}/models/zz.yaml:2: YAML syntax error") for p in got)
    assert len(got) == 4
    # str(error) lists them all, one a line.
    assert str(info.value).splitlines() == got


def test_missing_path_is_a_catalog_error(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="no such file or directory"):
        Catalog.load(tmp_path / "nowhere")


def test_directory_without_models_is_reported(tmp_path: Path) -> None:
    root = make_catalog(tmp_path)
    (root / "models" / "toy.yaml").unlink()
    assert problems_of(root) == [f"{root}/models:1: no models/*.yaml files found"]


def test_unknown_formula_version_is_reported_in_settings(tmp_path: Path) -> None:
    settings = (default_catalog_dir() / "settings.yaml").read_text()
    from modelglass.catalog._scores import FORMULAS

    settings = re.sub(r"(?m)^formula_version: \d+", "formula_version: 77", settings)
    line = next(i for i, s in enumerate(settings.splitlines(), 1) if s.startswith("formula_version"))
    root = make_catalog(tmp_path, settings=settings)
    assert problems_of(root) == [f"{root}/settings.yaml:{line}: formula_version: unknown formula "
                                 f"version 77; known: {', '.join(map(str, FORMULAS))}"]


# --- a single models file layered over the default catalog ------------------------------------------

def test_single_file_adds_and_replaces_models_over_the_default(tmp_path: Path) -> None:
    default = Catalog.default()
    mine = tmp_path / "mine.yaml"
    sdxl_override = textwrap.dedent("""\
      sdxl:
        name: My SDXL
        family: stable-diffusion
        licence: {id: creativeml-openrail++-m, open_weights: true, commercial_use: true}
        controls: {negative_prompt: native, seed: true}
        geometry: {multiple_of: 8, max_megapixels: 1.048576}
        offers:
          - provider: local
            endpoint: me/my-sdxl
            pipeline: StableDiffusionXLPipeline
            price: {kind: gpu_seconds, seconds: 3.0}
            as_of: 2026-11-01
            source: K
    """)
    mine.write_text(TOY + textwrap.indent(sdxl_override, "  "))
    cat = Catalog.load(mine)
    assert "toy" in cat.models
    assert cat.models["sdxl"].name == "My SDXL"
    assert [v.key for v in cat.offers_for("sdxl")] == ["sdxl@local"]
    assert set(default.models) - {"sdxl"} <= set(cat.models)
    assert len(cat.models) == len(default.models) + 1
    assert cat.sources[-1] == str(mine)


def test_single_file_problems_point_into_that_file(tmp_path: Path) -> None:
    mine = tmp_path / "mine.yaml"
    mine.write_text(edit(TOY, "usd_per_megapixel: 0.02", "usd_per_megapixel: -0.02"))
    assert problems_of(mine) == [
        f"{mine}:22: models.toy.offers[1].price.usd_per_megapixel: must be ≥ 0"]


def test_single_file_may_name_a_default_model_as_replacement(tmp_path: Path) -> None:
    mine = tmp_path / "mine.yaml"
    mine.write_text(edit(TOY, "    licence: {id: mit}\n",
                         "    licence: {id: mit}\n    lifecycle: {status: retired, "
                         "shutdown_on: 2026-01-01, replacement: flux-schnell}\n"))
    assert Catalog.load(mine).models["toy"].lifecycle.replacement == "flux-schnell"
