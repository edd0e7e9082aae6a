"""Saved images carry their provenance: A1111 ``parameters``, modelglass JSON, C2PA kept intact."""

from __future__ import annotations

import io
import json
import struct
import zlib
from pathlib import Path

import pytest
from PIL import Image

import modelglass as mg
from modelglass._c2pa import png_chunks
from modelglass._provenance import (
    build_metadata,
    parameters_text,
    png_text,
    read_metadata,
    scrub,
    sidecar_path,
)
from modelglass.errors import InvalidRequest
from modelglass.result import Attempt, Fate, FateKind, GeneratedImage, ImageResult
from modelglass.testing import SIMULATED_MARKER, render_image

PNG = render_image("a lighthouse at dusk", 42, 80, 48, "png")
JPEG = render_image("a lighthouse at dusk", 42, 80, 48, "jpeg")
WEBP = render_image("a lighthouse at dusk", 42, 80, 48, "webp")


def _real_png(w: int = 40, h: int = 24) -> bytes:
    """A PNG with no simulator marker: what a real provider would send."""
    buf = io.BytesIO()
    Image.new("RGB", (w, h), (200, 30, 30)).save(buf, "PNG")
    return buf.getvalue()


def _chunk(ctype: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + ctype + body + struct.pack(">I", zlib.crc32(ctype + body))


def _meta(**over: object) -> dict:
    meta = {
        "model": "flux-dev", "provider": "fal", "seed": 42,
        "request": {"prompt": "a lighthouse at dusk, oil painting", "negative_prompt": "blurry",
                    "cfg": 6.5, "steps": 30, "seed": 42, "quality": "hero"},
        "planned": {"prompt": "a lighthouse at dusk, oil painting", "negative_prompt": "blurry",
                    "guidance": 6.5, "steps": 30, "sampler": "euler", "quality": "hero",
                    "width": 80, "height": 48},
        "fates": [Fate("steps", FateKind.honored, 30, 30).to_dict()],
        "cost_usd": 0.025, "cost_is_estimate": True, "timings": {"call_s": 1.5},
    }
    meta.update(over)
    return meta


def _image(data: bytes = PNG, **kw: object) -> GeneratedImage:
    kw.setdefault("metadata", _meta())
    mime = {b"\x89P": "image/png", b"\xff\xd8": "image/jpeg"}.get(data[:2], "image/webp")
    return GeneratedImage(data=data, mime=mime, width=80, height=48, seed=42, **kw)  # type: ignore[arg-type]


# -- PNG round trip --------------------------------------------------------------------------------
def test_png_round_trip_of_both_chunks(tmp_path: Path) -> None:
    img = _image()
    written = img.save(tmp_path / "out.png")
    assert written == tmp_path / "out.png"
    meta = read_metadata(written)
    assert meta["model"] == "flux-dev" and meta["provider"] == "fal" and meta["seed"] == 42
    assert meta["request"]["negative_prompt"] == "blurry"
    assert meta["fates"][0]["control"] == "steps"
    assert meta["cost_usd"] == 0.025 and meta["timings"] == {"call_s": 1.5}
    assert meta["sha256"] == img.sha256  # of the provider's bytes, not of the file
    assert meta["image"] == {"index": 0, "width": 80, "height": 48, "mime": "image/png",
                             "c2pa": False}
    # Any PNG reader sees the chunks (they sit before the image data).
    with Image.open(written) as im:
        assert im.info["parameters"] == parameters_text(meta)
        assert json.loads(im.info["modelglass"]) == meta
        im.load()
        assert im.size == (80, 48)


def test_provider_png_is_not_re_encoded(tmp_path: Path) -> None:
    written = _image().save(tmp_path / "out.png")
    data = written.read_bytes()
    idat = [data[s:e] for t, s, e in png_chunks(data) if t == b"IDAT"]
    assert idat == [PNG[s:e] for t, s, e in png_chunks(PNG) if t == b"IDAT"]
    assert png_text(data)["Simulated"] == SIMULATED_MARKER  # the provider's own chunks stay
    order = [t for t, _, _ in png_chunks(data)]
    assert order.index(b"IDAT") > max(i for i, t in enumerate(order) if t in (b"tEXt", b"iTXt"))


def test_saving_twice_does_not_duplicate_the_chunks(tmp_path: Path) -> None:
    first = _image().save(tmp_path / "a.png")
    again = _image(first.read_bytes()).save(tmp_path / "b.png")
    data = again.read_bytes()
    keys = [data[s + 8:e - 4].split(b"\0")[0] for t, s, e in png_chunks(data)
            if t in (b"tEXt", b"iTXt")]
    assert keys.count(b"parameters") == 1 and keys.count(b"modelglass") == 1


def test_no_suffix_gets_png(tmp_path: Path) -> None:
    assert _image().save(tmp_path / "sub" / "out") == tmp_path / "sub" / "out.png"


@pytest.mark.parametrize("data", [JPEG, WEBP])
def test_jpeg_and_webp_bytes_are_converted_to_png(tmp_path: Path, data: bytes) -> None:
    written = _image(data).save(tmp_path / "out.png")
    with Image.open(written) as im:
        assert im.format == "PNG" and im.size == (80, 48)
    meta = read_metadata(written)
    assert meta["saved"]["rewritten"] is True
    assert meta["sha256"] == _image(data).sha256


def test_large_metadata_is_compressed_and_still_reads_back(tmp_path: Path) -> None:
    big = _meta(notes=["x" * 100] * 500)
    written = _image(metadata=big).save(tmp_path / "out.png")
    assert read_metadata(written)["notes"] == big["notes"]
    assert written.stat().st_size < len(PNG) + 20_000


# -- other formats ---------------------------------------------------------------------------------
def test_jpg_path_keeps_jpeg_bytes_and_writes_a_sidecar(tmp_path: Path) -> None:
    written = _image(JPEG).save(tmp_path / "out.jpg")
    assert written.read_bytes() == JPEG
    side = sidecar_path(written)
    assert side == tmp_path / "out.jpg.modelglass.json"  # per file (issue 8): was out.modelglass.json
    doc = json.loads(side.read_text())
    assert doc["file"] == "out.jpg" and doc["parameters"].startswith("a lighthouse")
    assert read_metadata(written)["model"] == "flux-dev"
    assert read_metadata(side)["model"] == "flux-dev"


def test_webp_path_converts_png_bytes(tmp_path: Path) -> None:
    written = _image(PNG).save(tmp_path / "out.webp")
    with Image.open(written) as im:
        assert im.format == "WEBP"
    assert read_metadata(written)["saved"]["format"] == "image/webp"


def test_an_unsupported_suffix_is_refused_naming_the_path(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequest, match=r"\.gif") as info:
        _image().save(tmp_path / "out.gif")
    assert info.value.field == "path"


def test_a_file_without_provenance_says_so(tmp_path: Path) -> None:
    plain = tmp_path / "plain.png"
    plain.write_bytes(_real_png())
    with pytest.raises(ValueError, match="no modelglass provenance"):
        read_metadata(plain)


# -- C2PA ------------------------------------------------------------------------------------------
def test_c2pa_png_is_written_byte_for_byte_with_a_sidecar(tmp_path: Path) -> None:
    signed = PNG[:33] + _chunk(b"caBX", b"\x00\x00\x00\x10jumbc2pa-manifest") + PNG[33:]
    written = _image(signed).save(tmp_path / "out.png")
    assert written == tmp_path / "out.png"
    assert written.read_bytes() == signed
    meta = read_metadata(written)
    assert meta["image"]["c2pa"] is True and meta["saved"]["rewritten"] is False
    assert sidecar_path(written).exists()


def test_c2pa_jpeg_keeps_its_native_extension(tmp_path: Path) -> None:
    body = b"JP\x00\x01\x00\x00\x00\x01\x00\x00\x00\x20jumb\x00\x00\x00\x10jumdc2pa"
    signed = JPEG[:2] + b"\xff\xeb" + struct.pack(">H", len(body) + 2) + body + JPEG[2:]
    written = _image(signed).save(tmp_path / "out.png")
    assert written == tmp_path / "out.jpg"
    assert written.read_bytes() == signed
    assert not (tmp_path / "out.png").exists()
    assert read_metadata(written)["image"]["c2pa"] is True


# -- simulated -------------------------------------------------------------------------------------
def test_simulated_images_say_so_in_json_and_parameters(tmp_path: Path) -> None:
    written = _image(_real_png(), simulated=True).save(tmp_path / "sim.png")
    meta = read_metadata(written)
    assert meta["simulated"] is True and "no provider was called" in meta["simulated_note"]
    with Image.open(written) as im:
        assert "Simulated: true" in im.info["parameters"]


def test_simulator_bytes_are_flagged_even_if_nobody_said(tmp_path: Path) -> None:
    meta = read_metadata(_image(PNG, simulated=False, metadata={}).save(tmp_path / "a.png"))
    assert meta["simulated"] is True


def test_real_images_are_not_flagged(tmp_path: Path) -> None:
    written = _image(_real_png(), metadata=_meta(simulated=False)).save(tmp_path / "r.png")
    assert read_metadata(written)["simulated"] is False
    with Image.open(written) as im:
        assert "Simulated" not in im.info["parameters"]


# -- secrets ---------------------------------------------------------------------------------------
def test_no_secrets_are_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    keys = {"OPENAI_API_KEY": "sk-proj-abcdefghijklmnopqrstuvwx0123",
            "FAL_KEY": "fal-key-id-4242:fal-secret-part-9999",
            "REPLICATE_API_TOKEN": "r8_Zyxwvutsrqponmlkjihg0987"}
    for name, value in keys.items():
        monkeypatch.setenv(name, value)
    leaky = _meta(
        headers={"Authorization": "Bearer " + keys["OPENAI_API_KEY"], "x-api-key": "abc123"},
        api_key=keys["REPLICATE_API_TOKEN"],
        note=f"called with {keys['FAL_KEY']} and {keys['REPLICATE_API_TOKEN']}",
        error="401 for fal-secret-part-9999 only",
        usage={"input_tokens": 12, "output_tokens": 4200},
    )
    leaky["request"] = {**leaky["request"], "prompt": "a sign reading sk-live0123456789abcdefghij"}
    img = _image(metadata=leaky)
    outputs = [img.save(tmp_path / "a.png"), img.save(tmp_path / "b.jpg"),
               sidecar_path(tmp_path / "b.jpg")]
    secrets = [*keys.values(), "fal-key-id-4242", "fal-secret-part-9999", "abc123",
               "sk-live0123456789abcdefghij"]
    for path in outputs:
        data = path.read_bytes()
        texts = (" ".join(png_text(data).values()) if data.startswith(b"\x89PNG")
                 else data.decode("latin-1"))
        for secret in secrets:
            assert secret not in texts, (path.name, secret)
            assert secret.encode() not in data
    meta = read_metadata(outputs[0])
    assert meta["headers"]["Authorization"] == "[redacted]"
    assert meta["usage"] == {"input_tokens": 12, "output_tokens": 4200}  # not a credential


def test_scrub_keeps_ordinary_words() -> None:
    assert scrub({"prompt": "Key lime pie, a token of love", "steps": 30}, []) == {
        "prompt": "Key lime pie, a token of love", "steps": 30}


# -- A1111 text ------------------------------------------------------------------------------------
def test_parameters_text_follows_the_a1111_layout() -> None:
    text = parameters_text(_meta(image={"width": 1024, "height": 768}))
    assert text == (
        "a lighthouse at dusk, oil painting\n"
        "Negative prompt: blurry\n"
        "Steps: 30, Sampler: euler, CFG scale: 6.5, Seed: 42, Size: 1024x768, Model: flux-dev, "
        "Provider: fal, Quality: hero, Cost: $0.0250 estimate")


def test_parameters_quote_values_with_commas_or_colons() -> None:
    text = parameters_text({"request": {"prompt": "p"}, "model": "a,b", "provider": "x:y"})
    assert text == 'p\nModel: "a,b", Provider: "x:y"'


def test_parameters_show_what_was_sent_not_what_was_asked() -> None:
    meta = _meta()
    meta["planned"] = {**meta["planned"], "negative_prompt": None, "steps": 50, "guidance": None}
    text = parameters_text(meta)
    assert "Negative prompt" not in text and "Steps: 50" in text and "CFG" not in text


def test_distilled_guidance_is_named_as_such() -> None:
    meta = _meta()
    meta["planned"] = {**meta["planned"], "guidance_kind": "distilled", "guidance": 3.5,
                       "true_cfg": None}
    text = parameters_text(meta)
    assert "Distilled CFG Scale: 3.5" in text and "CFG scale:" not in text


# -- metadata from a real plan ---------------------------------------------------------------------
def test_build_metadata_from_a_planned_result(tmp_path: Path) -> None:
    client = mg.Client(available=["fal"])
    call = client.plan("a red bicycle", quality="draft", seed=7, steps=4, model="flux-schnell",
                       provider="fal")
    image = GeneratedImage(data=PNG, mime="image/png", width=80, height=48, seed=7)
    result = ImageResult(images=[image], model=call.model, provider=call.provider, cost_usd=0.003,
                         cost_is_estimate=False, latency_s=0.5, fates=call.fates, plan=call,
                         simulated=True, timings={"total_s": 0.5},
                         attempts=[Attempt(1, call.model, "fal", call.offer.key, 0.0, 0.5)])
    image.metadata = build_metadata(result, image)
    json.dumps(image.metadata)  # JSON-ready
    meta = read_metadata(image.save(tmp_path / "bike.png"))
    assert meta["offer"] == "flux-schnell@fal" and meta["simulated"] is True
    assert meta["request"]["prompt"] == "a red bicycle"
    assert meta["plan"]["endpoint"] == call.offer.endpoint
    assert meta["attempts"][0]["provider"] == "fal"
    assert {f["control"] for f in meta["fates"]} >= {"seed", "steps"}
    with Image.open(tmp_path / "bike.png") as im:
        params = im.info["parameters"]
    assert params.startswith("a red bicycle\n")
    assert "Seed: 7" in params and "Model: flux-schnell" in params and "Provider: fal" in params
    assert "Simulated: true" in params


def test_without_planned_values_the_fates_say_what_was_sent() -> None:
    meta = _meta(fates=[Fate("steps", FateKind.approximated, 80, 50).to_dict(),
                        Fate("negative_prompt", FateKind.dropped, "blurry", None,
                             "distilled model").to_dict()])
    del meta["planned"]
    text = parameters_text(meta)
    assert "Steps: 50" in text and "Negative prompt" not in text and "CFG scale: 6.5" in text


def test_saved_files_get_the_usual_mode_under_the_umask(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import os
    import stat

    from modelglass.result import GeneratedImage
    from modelglass.testing import render_image

    img = GeneratedImage(data=render_image("a fox", 1, 32, 32), mime="image/png", width=32, height=32)
    old = os.umask(0o022)
    try:
        path = img.save(tmp_path / "fox.png")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
