"""Outcome checks on their own: the text check (real OCR on simulated images), the cheap checks,
the scoring as CVTG-2K scores it, and what ``check=`` accepts."""

from __future__ import annotations

import io
import socket

import pytest
from PIL import Image, ImageDraw

import modelglass as mg
from modelglass.checks import (
    BlankCheck,
    SameBytesCheck,
    TextCheck,
    _ocr,
    builtin_checks,
    checking_of,
    expected_text,
    prompt_class,
    quoted_text,
    run_checks,
)
from modelglass.checks._text import edit_distance, text_metrics, words
from modelglass.result import GeneratedImage
from modelglass.testing import is_simulated, render_image
from modelglass.testing._images import misspelled, spells_right

SIGN = 'a neon sign above a diner door that says "OPEN LATE TONIGHT"'
CJK = "a bakery shop sign 「欢迎光临」"


def _image(prompt: str, *, misspell: bool = False, size: int = 1024, seed: int = 7,
           index: int = 0) -> GeneratedImage:
    data = render_image(prompt, seed, size, size, "png", misspell=misspell)
    return GeneratedImage(data=data, mime="image/png", width=size, height=size, index=index)


def _png(color: tuple[int, int, int], size: int = 256) -> GeneratedImage:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), color).save(buf, "PNG")
    return GeneratedImage(data=buf.getvalue(), mime="image/png", width=size, height=size)


def _text(prompt: str, **kw: object) -> mg.CheckResult:
    return TextCheck().check(_image(prompt, **kw), mg.ImageRequest(prompt=prompt))  # type: ignore[arg-type]


# -- what is expected ---------------------------------------------------------------------------
def test_the_expected_text_is_the_prompts_quoted_text_unless_expect_text_names_it() -> None:
    assert quoted_text('a sign that says "OPEN" and “CLOSED”') == "OPEN CLOSED"
    assert quoted_text("a fox in the snow") is None
    assert expected_text(mg.ImageRequest(prompt="a mug", expect_text=" BEST DAD ")) == "BEST DAD"
    assert expected_text(mg.ImageRequest(prompt='a sign "OPEN"')) == "OPEN"


def test_prompt_classes_are_latin_text_other_scripts_and_no_text() -> None:
    assert prompt_class(mg.ImageRequest(prompt='a sign "Café 24"')) == "latin"
    assert prompt_class(mg.ImageRequest(prompt=CJK)) == "other"
    assert prompt_class(mg.ImageRequest(prompt='a sign "Добро пожаловать"')) == "other"
    assert prompt_class(mg.ImageRequest(prompt="a fox")) == "none"


def test_words_are_normalized_and_cjk_counts_per_character() -> None:
    assert words("Open-Late, TONIGHT!") == ["open", "late", "tonight"]
    assert words("欢迎光临 2026") == ["欢", "迎", "光", "临", "2026"]
    assert edit_distance("kitten", "sitting") == 3
    # katakana drawn exactly like a hiragana compare as it (OCR reads ひかりの森 as ひかリの森)
    assert words("ひかリの森") == words("ひかりの森") == ["ひ", "か", "り", "の", "森"]
    assert words("ラーメン") != words("らーめん")  # other katakana stay katakana


def test_scores_are_word_accuracy_and_normalized_edit_distance() -> None:
    lines = [_ocr.Line("OPEN LATF", 0.97, 0, 0), _ocr.Line("TONIGHT", 0.99, 0, 60),
             _ocr.Line("SIMULATED", 0.99, 0, 500)]
    m = text_metrics("OPEN LATE TONIGHT", lines)
    assert m.word_accuracy == pytest.approx(2 / 3)
    assert m.observed == "open latf tonight"  # the unrelated line is not part of the reading
    assert m.ned == pytest.approx(1 / len("open late tonight"))


def test_expected_words_that_ocr_ran_together_count_but_a_misspelled_run_does_not() -> None:
    # PP-OCR often drops a narrow space: "BUT FIRST" read as "BUTFIRST" is still the text
    run = text_metrics("BUT FIRST COFFEE", [_ocr.Line("BUTFIRST COFFEE", 0.99, 0, 0)])
    assert (run.word_accuracy, run.ned, run.observed) == (1.0, 0.0, "but first coffee")
    # only expected words in their expected order are split: a misspelling stays wrong,
    # and so do the right words run together in the wrong order
    typo = text_metrics("BUT FIRST COFFEE", [_ocr.Line("BUTFIRTS COFFEE", 0.99, 0, 0)])
    assert typo.word_accuracy == pytest.approx(1 / 3)
    swapped = text_metrics("BUT FIRST COFFEE", [_ocr.Line("FIRSTBUT COFFEE", 0.99, 0, 0)])
    assert swapped.word_accuracy == pytest.approx(1 / 3)


def test_the_real_ocr_reading_of_tightly_set_words_passes() -> None:
    # the words a few pixels apart, as tightly set signage is: PP-OCR reads "BUTFIRSTCOFFEE"
    from modelglass._fonts import latin_font

    img = Image.new("RGB", (640, 200), (30, 30, 30))
    draw = ImageDraw.Draw(img)
    font, x = latin_font(56), 40.0
    for word in ("BUT", "FIRST", "COFFEE"):
        draw.text((x, 70), word, fill=(255, 255, 255), font=font)
        x += draw.textlength(word, font=font) + 4
    buf = io.BytesIO()
    img.save(buf, "PNG")
    assert [ln.text for ln in _ocr.read_text(buf.getvalue())] == ["BUTFIRSTCOFFEE"]
    image = GeneratedImage(data=buf.getvalue(), mime="image/png", width=640, height=200)
    prompt = 'a ceramic coffee mug printed with "BUT FIRST COFFEE"'
    result = TextCheck().check(image, mg.ImageRequest(prompt=prompt))
    assert (result.verdict, result.observed) == ("pass", "but first coffee")


def test_low_ocr_confidence_gives_unknown_never_fail() -> None:
    from modelglass.checks._text import _verdict

    unsure = text_metrics("OPEN", [_ocr.Line("OPFN", 0.41, 0, 0)])
    assert _verdict(unsure, 0.6)[0] == "unknown"
    sure = text_metrics("OPEN", [_ocr.Line("OPFN", 0.95, 0, 0)])
    assert _verdict(sure, 0.6)[0] == "fail"
    absent = text_metrics("OPEN", [_ocr.Line("SIMULATED", 0.99, 0, 0)])
    assert _verdict(absent, 0.6) == ("fail", "the text was not found (1 other line(s) read)")


# -- the text check, with the real OCR ------------------------------------------------------------
def test_the_text_check_passes_text_spelled_right_and_fails_a_misspelling() -> None:
    good = _text(SIGN)
    assert (good.verdict, good.score, good.observed) == ("pass", 1.0, "open late tonight")
    assert good.checker.startswith("rapidocr 3.")
    assert good.metrics["confidence"] >= 0.6
    bad = _text(SIGN, misspell=True)
    assert bad.verdict == "fail"
    assert bad.observed == " ".join(words(misspelled("OPEN LATE TONIGHT")))
    assert 0.5 < bad.score < 1.0 and bad.metrics["word_accuracy"] == pytest.approx(2 / 3)


def test_the_text_check_reads_chinese_drawn_by_the_simulator() -> None:
    assert _text(CJK).verdict == "pass"
    wrong = _text(CJK, misspell=True)
    assert wrong.verdict == "fail" and wrong.metrics["word_accuracy"] == pytest.approx(3 / 4)


def test_a_script_the_ocr_model_does_not_read_gives_unknown() -> None:
    result = _text('a sign that says "Добро пожаловать"')
    assert result.verdict == "unknown" and "CYRILLIC" in result.detail


def test_the_ocr_loads_its_models_from_the_wheel_without_any_network(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from rapidocr.utils import download_file

    downloads: list[object] = []
    connects: list[object] = []
    monkeypatch.setattr(download_file.DownloadFile, "run",
                        classmethod(lambda cls, params: downloads.append(params)))
    real = socket.socket.connect

    def watch(self: socket.socket, address: object) -> None:
        connects.append(address)
        return real(self, address)  # type: ignore[arg-type]

    monkeypatch.setattr(socket.socket, "connect", watch)
    monkeypatch.setattr(_ocr, "_engine", None)  # a fresh engine, built inside the watch
    assert _text(SIGN).verdict == "pass"
    assert _ocr._engine is not None
    assert downloads == [] and connects == []


def test_without_the_check_extra_the_text_check_says_what_to_install(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A plain install has neither rapidocr nor numpy: the error names the extra, not numpy."""
    import sys

    monkeypatch.setitem(sys.modules, "rapidocr", None)
    monkeypatch.setitem(sys.modules, "numpy", None)
    monkeypatch.setattr(_ocr, "_engine", None)
    with pytest.raises(ImportError, match=r"pip install 'modelglass\[check\]'"):
        _ocr.read_text(render_image("a fox", 1, 64, 64))


def test_text_on_the_image_border_is_read_whole_after_our_padding() -> None:
    img = Image.new("RGB", (640, 200), (40, 40, 90))
    from PIL import ImageDraw, ImageFont

    ImageDraw.Draw(img).text((0, 100), "SALE", font=ImageFont.load_default(size=90),
                             fill=(255, 255, 255), anchor="lm")
    buf = io.BytesIO()
    img.save(buf, "PNG")
    padded = _ocr.prepare(buf.getvalue())
    assert padded.shape[1] > 640 and padded.shape[0] > 200  # a border was added
    image = GeneratedImage(data=buf.getvalue(), mime="image/png", width=640, height=200)
    assert TextCheck().check(image, mg.ImageRequest(prompt='"SALE"')).verdict == "pass"


# -- the cheap checks -----------------------------------------------------------------------------
def test_a_uniform_image_fails_the_blank_check() -> None:
    req = mg.ImageRequest(prompt="a fox")
    black = BlankCheck().check(_png((0, 0, 0)), req)
    assert black.verdict == "fail" and black.score == 0.0 and "one colour" in black.detail
    assert BlankCheck().check(_image("a fox", size=256), req).verdict == "pass"


def test_the_same_bytes_as_another_image_of_the_job_fail() -> None:
    req = mg.ImageRequest(prompt="a fox")
    a, b = _image("a fox", size=64, index=0), _image("a fox", size=64, index=1)
    c = _image("a fox", size=64, seed=8, index=2)
    results = run_checks([SameBytesCheck()], [a, b, c], req)
    assert [r.verdict for r in results] == ["fail", "fail", "pass"]
    assert results[0].observed == 1 and results[1].observed == 0
    earlier = run_checks([SameBytesCheck()], [c], req, earlier=[(0, c.sha256)])
    assert earlier[0].verdict == "fail"


def test_only_the_checks_that_apply_run() -> None:
    results = run_checks(builtin_checks(), [_image("a fox", size=64)], mg.ImageRequest(prompt="a fox"))
    assert [r.name for r in results] == ["blank", "same-bytes"]  # no text to check


# -- CheckResult and check= -----------------------------------------------------------------------
def test_a_check_result_keeps_its_contract() -> None:
    r = mg.CheckResult("text", "fail", 0.8, expected="OPEN", observed="OPFN", checker="ocr 1",
                       metrics={"ned": 0.25})
    assert mg.CheckResult.from_dict(r.to_dict()) == r
    with pytest.raises(ValueError, match="verdict"):
        mg.CheckResult("text", "maybe")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="0..1"):
        mg.CheckResult("text", "pass", 1.5)


class _Judge:
    name = "judge"

    def applies(self, request: mg.ImageRequest) -> bool:
        return True

    def check(self, image: GeneratedImage, request: mg.ImageRequest) -> mg.CheckResult:
        return mg.CheckResult(self.name, "pass", 1.0)


def test_check_takes_true_names_and_checkers_of_your_own() -> None:
    assert [c.name for c in checking_of(True).checkers] == ["blank", "same-bytes", "text"]  # type: ignore[union-attr]
    mixed = checking_of(["text", _Judge()], on_fail="retry", max_check_retries=2)
    assert mixed is not None and [c.name for c in mixed.checkers] == ["text", "judge"]
    assert isinstance(_Judge(), mg.Checker)
    assert checking_of(False) is None


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"check": False, "on_fail": "retry"}, "on_fail"),
    ({"check": True, "on_fail": "again"}, "on_fail"),
    ({"check": ["ocr"]}, "check"),
    ({"check": [object()]}, "check"),
    ({"check": "text"}, "check"),
    ({"check": True, "max_check_retries": -1}, "max_check_retries"),
    ({"check": True, "max_check_retries": True}, "max_check_retries"),
])
def test_bad_check_arguments_are_refused_by_name(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(mg.InvalidRequest) as err:
        checking_of(**kwargs)  # type: ignore[arg-type]
    assert err.value.field == field


# -- the simulators' text -------------------------------------------------------------------------
def test_simulated_images_without_quoted_text_are_drawn_as_before() -> None:
    assert render_image("a fox", 3, 64, 40, misspell=True) == render_image("a fox", 3, 64, 40)
    assert render_image(SIGN, 3, 256, 256, misspell=True) != render_image(SIGN, 3, 256, 256)
    assert is_simulated(render_image(SIGN, 3, 256, 256, misspell=True))


def test_text_accuracy_draws_are_fixed_per_seed_and_follow_the_rate() -> None:
    draws = [spells_right(0.3, "fal-ai/flux/schnell", SIGN, s) for s in range(400)]
    assert draws == [spells_right(0.3, "fal-ai/flux/schnell", SIGN, s) for s in range(400)]
    assert 0.22 < sum(draws) / len(draws) < 0.38
    assert misspelled("OPEN LATE") != "OPEN LATE" and misspelled("欢迎") != "欢迎"


def test_without_the_ocr_installed_the_text_check_says_unknown_and_how_to_install(
        monkeypatch: pytest.MonkeyPatch) -> None:
    def missing() -> None:
        raise _ocr._missing(ImportError("No module named 'rapidocr'"))

    monkeypatch.setattr(_ocr, "_load", missing)
    (result,) = run_checks([TextCheck()], [_image(SIGN, size=256)], mg.ImageRequest(prompt=SIGN))
    assert result.verdict == "unknown" and "modelglass[check]" in result.detail


def test_without_a_cjk_font_the_simulator_leaves_the_text_out_and_the_check_says_unknown(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from modelglass import _fonts

    monkeypatch.setattr(_fonts, "CJK_FONTS", ())
    monkeypatch.delenv("MODELGLASS_SIM_CJK_FONT", raising=False)
    _fonts.cjk_font.cache_clear()
    try:
        assert not _fonts.can_draw("欢迎光临") and _fonts.can_draw("OPEN")
        data = render_image(CJK, 99, 512, 512)
        image = GeneratedImage(data=data, mime="image/png", width=512, height=512,
                               simulated=True)
        result = TextCheck().check(image, mg.ImageRequest(prompt=CJK))
    finally:
        _fonts.cjk_font.cache_clear()
    assert result.verdict == "unknown" and "no font" in result.detail
    with Image.open(io.BytesIO(data)) as im:  # no tofu boxes: the text band holds no white
        band = im.convert("RGB").crop((0, 0, 512, int(512 * 0.42)))
        assert (255, 255, 255) not in {c for _, c in band.getcolors(1 << 16) or []}
    # the textless render is not served from the cache once the font is back
    monkeypatch.undo()
    _fonts.cjk_font.cache_clear()
    assert render_image(CJK, 99, 512, 512) != data
