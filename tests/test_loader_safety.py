"""Hostile catalog YAML (issue 8 items 4 and 10): every case is a fast CatalogError with file:line.

Alias bombs, self-referencing aliases, deep nesting, invalid UTF-8, and numbers that would switch
budget limits off (.nan, .inf, negative prices).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from test_catalog_load import TOY, edit, make_catalog, problems_of

from modelglass.catalog._yaml import MAX_DEPTH, MAX_NODES


def _fast_problems(path: Path, limit_s: float = 2.0) -> list[str]:
    t0 = time.perf_counter()
    problems = problems_of(path)
    assert time.perf_counter() - t0 < limit_s, "a hostile file must be refused quickly"
    return problems


def _bomb(levels: int = 9) -> str:
    lines = ['_a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, levels + 1):
        refs = ",".join([f"*a{i - 1}"] * 9)
        lines.append(f"_a{i}: &a{i} [{refs}]")
    return "\n".join(lines) + "\n"


def test_alias_bomb_is_refused_fast(tmp_path: Path) -> None:
    bomb = _bomb()
    assert len(bomb.encode()) < 500  # a few hundred bytes that would expand to 9^10 nodes
    problems = _fast_problems(make_catalog(tmp_path, TOY + bomb))
    assert len(problems) == 1
    assert problems[0].startswith(str(tmp_path / "models" / "toy.yaml") + ":")
    assert "alias bomb" in problems[0] and f"{MAX_NODES:,}" in problems[0]


def test_merge_key_bomb_is_refused_fast(tmp_path: Path) -> None:
    lines = ["_m0: &m0 {a: 1, b: 2, c: 3, d: 4, e: 5, f: 6, g: 7, h: 8}"]
    for i in range(1, 10):
        lines.append(f"_m{i}: &m{i} {{<<: [{', '.join([f'*m{i - 1}'] * 8)}]}}")
    problems = _fast_problems(make_catalog(tmp_path, TOY + "\n".join(lines) + "\n"))
    assert any("alias bomb" in p for p in problems)


def test_aliases_that_stay_small_still_load(tmp_path: Path) -> None:
    models = edit(TOY, "    licence: {id: mit}", "    licence: &lic {id: mit}")
    models += "_again: [*lic, *lic, *lic]\n"
    from modelglass.catalog import Catalog

    assert list(Catalog.load(make_catalog(tmp_path, models)).models) == ["toy"]


def test_self_referencing_alias_is_refused(tmp_path: Path) -> None:
    problems = _fast_problems(make_catalog(tmp_path, TOY + "_loop: &loop [1, *loop]\n"))
    assert len(problems) == 1
    line = TOY.count("\n") + 1
    assert problems[0].startswith(f"{tmp_path / 'models' / 'toy.yaml'}:{line}:")
    assert "self-referencing alias" in problems[0]


def test_self_referencing_mapping_alias_is_refused(tmp_path: Path) -> None:
    problems = _fast_problems(make_catalog(tmp_path, TOY + "_loop: &loop {me: *loop}\n"))
    assert "self-referencing alias" in problems[0]


@pytest.mark.parametrize("depth", [MAX_DEPTH + 5, 5000])
def test_deep_nesting_is_refused(tmp_path: Path, depth: int) -> None:
    problems = _fast_problems(make_catalog(tmp_path, TOY + "_deep: " + "[" * depth + "]" * depth
                                           + "\n"))
    assert len(problems) == 1
    assert problems[0].startswith(f"{tmp_path / 'models' / 'toy.yaml'}:")
    assert "nested" in problems[0]


def test_invalid_utf8_names_the_line(tmp_path: Path) -> None:
    root = make_catalog(tmp_path)
    path = root / "models" / "toy.yaml"
    raw = path.read_bytes().replace(b"name: Toy", b"name: T\xffoy")
    path.write_bytes(raw)
    problems = _fast_problems(root)
    assert problems == [f"{path}:3: not valid UTF-8 (byte 0xff at column 12); save the file as "
                        "UTF-8"]


@pytest.mark.parametrize("bad", [".nan", ".NaN", ".inf", "-.inf", "-0.01"])
def test_poisoned_price_is_refused_with_file_and_line(tmp_path: Path, bad: str) -> None:
    models = edit(TOY, "usd_per_megapixel: 0.02", f"usd_per_megapixel: {bad}")
    problems = _fast_problems(make_catalog(tmp_path, models))
    assert len(problems) == 1
    assert problems[0].startswith(
        f"{tmp_path / 'models' / 'toy.yaml'}:22: models.toy.offers[1].price.usd_per_megapixel: ")
    assert ("finite number" in problems[0]) or ("must be ≥ 0" in problems[0])


@pytest.mark.parametrize(("price", "field"), [
    ("{kind: per_tier, tiers: {low: {1024x1024: .nan}}}", "tiers"),
    ("{kind: first_megapixel, usd: .inf, usd_per_extra_megapixel: 0.01}", "usd"),
    ("{kind: per_image_resolution, usd: 0.1, resolution_multipliers: {1K: -1}}",
     "resolution_multipliers"),
    ("{kind: per_token, usd_per_1m_image_output_tokens: 30, output_tokens: {low: {1024x1024: -5}}}",
     "output_tokens"),
    ("{kind: gpu_seconds, seconds: .nan}", "seconds"),
])
def test_poisoned_numbers_in_every_price_kind_are_refused(tmp_path: Path, price: str,
                                                          field: str) -> None:
    models = edit(TOY, "price: {kind: per_image, usd: 0.01}", f"price: {price}")
    problems = _fast_problems(make_catalog(tmp_path, models))
    assert any(p.startswith(f"{tmp_path / 'models' / 'toy.yaml'}:14: models.toy.offers[0].price")
               and field in p for p in problems), problems


def test_deep_brackets_are_refused_before_the_slow_scanner(tmp_path: Path) -> None:
    deep = TOY + "_deep: " + "[" * 50_000 + "]" * 50_000 + "\n"
    problems = _fast_problems(make_catalog(tmp_path, deep), limit_s=1.0)
    line = TOY.count("\n") + 1
    assert problems == [f"{tmp_path / 'models' / 'toy.yaml'}:{line}: unsafe YAML: brackets "
                        f"nested deeper than {MAX_DEPTH} levels"]


def test_deep_block_nesting_is_refused(tmp_path: Path) -> None:
    problems = _fast_problems(make_catalog(tmp_path, TOY + "_deep:\n  " + "- " * 5000 + "a\n"))
    # libyaml says "exceeded maximum nesting depth"; the pure-Python reader is refused by ours
    assert len(problems) == 1 and "nest" in problems[0]
    assert problems[0].startswith(f"{tmp_path / 'models' / 'toy.yaml'}:")


def test_huge_files_are_refused_unread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from modelglass.catalog import _yaml as _load

    monkeypatch.setattr(_load, "MAX_BYTES", 1000)
    problems = _fast_problems(make_catalog(tmp_path, TOY + "#" + "x" * 2000 + "\n"))
    assert any("bytes; catalog files are refused above 1,000" in p for p in problems)
