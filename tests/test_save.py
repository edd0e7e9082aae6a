"""Saving images (issue 8, item 9): never overwrite unless asked, one sidecar per image file,
folders as targets, long names, and the CLI's ``--out`` checked before anything is paid for."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest
from typer.testing import CliRunner

from modelglass._provenance import read_metadata, sidecar_path
from modelglass.errors import InvalidRequest
from modelglass.result import GeneratedImage
from modelglass.testing import render_image

PNG = render_image("a lighthouse", 3, 64, 40, "png")
JPEG = render_image("a lighthouse", 3, 64, 40, "jpeg")
WEBP = render_image("a lighthouse", 3, 64, 40, "webp")


def image(data: bytes = PNG, prompt: str = "a lighthouse at dusk") -> GeneratedImage:
    mime = {b"\x89P": "image/png", b"\xff\xd8": "image/jpeg"}.get(data[:2], "image/webp")
    return GeneratedImage(data=data, mime=mime, width=64, height=40, seed=3,
                          metadata={"model": "flux-dev", "provider": "fal",
                                    "request": {"prompt": prompt}})


def c2pa_jpeg() -> bytes:
    body = b"JP\x00\x01\x00\x00\x00\x01\x00\x00\x00\x20jumb\x00\x00\x00\x10jumdc2pa"
    return JPEG[:2] + b"\xff\xeb" + struct.pack(">H", len(body) + 2) + body + JPEG[2:]


@pytest.mark.parametrize("name", ["a.png", "a.jpg", "a.webp"])
def test_saving_onto_an_existing_file_is_refused_and_leaves_it_alone(tmp_path: Path,
                                                                     name: str) -> None:
    target = tmp_path / name
    target.write_bytes(b"precious")
    with pytest.raises(InvalidRequest, match="already exists") as info:
        image().save(target)
    assert info.value.field == "path"
    assert target.read_bytes() == b"precious"
    assert not sidecar_path(target).exists()
    assert [p.name for p in tmp_path.iterdir()] == [name]  # no temp file left behind


def test_overwrite_true_replaces(tmp_path: Path) -> None:
    target = tmp_path / "a.png"
    target.write_bytes(b"old")
    assert image().save(target, overwrite=True) == target
    assert read_metadata(target)["request"]["prompt"] == "a lighthouse at dusk"


def test_an_existing_sidecar_is_not_overwritten_either(tmp_path: Path) -> None:
    side = sidecar_path(tmp_path / "a.jpg")
    side.write_text("{}")
    with pytest.raises(InvalidRequest, match="already exists"):
        image().save(tmp_path / "a.jpg")
    assert side.read_text() == "{}" and not (tmp_path / "a.jpg").exists()


def test_jpg_and_webp_of_the_same_stem_get_their_own_sidecars(tmp_path: Path) -> None:
    a = image(prompt="first: a red bicycle").save(tmp_path / "a.jpg")
    b = image(prompt="second: a blue boat").save(tmp_path / "a.webp")
    assert sidecar_path(a) != sidecar_path(b)
    assert read_metadata(a)["request"]["prompt"] == "first: a red bicycle"
    assert read_metadata(b)["request"]["prompt"] == "second: a blue boat"


def test_a_c2pa_jpeg_saved_as_png_never_clobbers_the_jpg_next_to_it(tmp_path: Path) -> None:
    (tmp_path / "photo.jpg").write_bytes(b"my holiday photo")
    with pytest.raises(InvalidRequest, match="photo.jpg already exists"):
        image(c2pa_jpeg()).save(tmp_path / "photo.png")
    assert (tmp_path / "photo.jpg").read_bytes() == b"my holiday photo"
    written = image(c2pa_jpeg()).save(tmp_path / "other.png")
    assert written == tmp_path / "other.jpg" and written.read_bytes() == c2pa_jpeg()


@pytest.mark.parametrize("trailing", ["", "/"])
def test_saving_to_a_folder_saves_inside_it(tmp_path: Path, trailing: str) -> None:
    folder = tmp_path / "shots"
    if not trailing:
        folder.mkdir()
    written = Path(image(prompt="A Lighthouse, at dusk!").save(str(folder) + trailing))
    assert written.parent == folder and written.suffix == ".png"
    assert written.name.startswith("a-lighthouse-at-dusk-")
    assert not (tmp_path / "shots.png").exists()
    assert read_metadata(written)["request"]["prompt"] == "A Lighthouse, at dusk!"


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_a_valid_255_byte_name_works(tmp_path: Path, suffix: str) -> None:
    name = "x" * (255 - len(suffix)) + suffix
    written = image().save(tmp_path / name)
    assert written.name == name and len(os.fsencode(written.name)) == 255
    assert read_metadata(written)["model"] == "flux-dev"
    assert len(os.fsencode(sidecar_path(written).name)) <= 255


def test_legacy_sidecars_are_still_read_when_they_name_the_file(tmp_path: Path) -> None:
    (tmp_path / "old.jpg").write_bytes(JPEG)
    (tmp_path / "old.modelglass.json").write_text('{"file": "old.jpg", "model": "m"}')
    assert read_metadata(tmp_path / "old.jpg")["model"] == "m"
    (tmp_path / "old.webp").write_bytes(WEBP)
    with pytest.raises(ValueError, match="no modelglass provenance"):
        read_metadata(tmp_path / "old.webp")  # not the sidecar of this file


# -- the CLI checks --out before it spends ---------------------------------------------------------

@pytest.mark.parametrize("out", ["/proc/nope", "FILE"])
def test_cli_refuses_an_unusable_out_folder_before_sending_anything(tmp_path: Path,
                                                                    out: str) -> None:
    from modelglass.cli import app
    from modelglass.testing import simulate

    if out == "FILE":
        out = str(tmp_path / "a-file")
        Path(out).write_text("x")
    with simulate() as sim:
        result = CliRunner().invoke(app, ["generate", "a red bicycle", "--simulate",
                                          "--model", "flux-dev", "--out", out])
        assert result.exit_code != 0
        assert "Traceback" not in result.output
        assert "--out" in result.output
        assert sim.billed("fal") == 0 and sim.requests() == []


def test_cli_never_overwrites_a_jpg_when_saving(tmp_path: Path) -> None:
    from modelglass._cli_generate import _free

    (tmp_path / "x-s1-0.jpg").write_bytes(b"keep")
    assert _free(tmp_path / "x-s1-0.png") == tmp_path / "x-s1-0-2.png"
