"""Saving images with their provenance, and reading it back.

:meth:`GeneratedImage.save` lands here. What is written, by the path's suffix:

- ``.png`` (or no suffix): a PNG holding two text chunks, placed before the image data:

  - ``parameters`` (``tEXt``, or ``iTXt`` when the text is not Latin-1): the AUTOMATIC1111 line
    format that image viewers, ComfyUI and civitai read::

        a lighthouse at dusk
        Negative prompt: blurry
        Steps: 30, Sampler: euler, CFG scale: 6.5, Seed: 42, Size: 1024x1024, Model: flux-dev, ...

  - ``modelglass`` (``iTXt``, zlib-compressed when large): JSON with the request, the planned
    call, every fate, model, provider, seed, cost, timings, ``simulated``, the sha256 of the
    provider's bytes and, when ``generate(check=...)`` ran them, the image's outcome checks.

  PNG bytes from the provider are not re-encoded: the chunks are spliced in, every other chunk is
  kept as delivered. JPEG and WebP bytes are converted to PNG (lossless from the decoded pixels).
- ``.jpg`` / ``.jpeg`` / ``.webp``: the image in that format (the provider's bytes as they are
  when already in it, else converted by Pillow) and the provenance in a sidecar named after the
  whole file name, ``<name>.modelglass.json`` (``a.jpg.modelglass.json``, so ``a.jpg`` and
  ``a.webp`` never share one; see :func:`sidecar_path`) — the JSON above plus the ``parameters``
  text — those formats have no text chunk every reader agrees on.
- any other suffix: :class:`~modelglass.errors.InvalidRequest`.

**C2PA**: if the provider's bytes carry content credentials (:func:`~modelglass._c2pa.has_c2pa`),
rewriting them would break the signature. They are written byte for byte with their native
extension (``out.png`` becomes ``out.jpg`` for JPEG bytes) and the provenance goes to the
sidecar. :func:`save_image` returns the path it really wrote.

**Never overwrites** an existing image or sidecar unless ``overwrite=True`` (the check and the
write are one atomic step: the file is linked into place, which fails if the name is taken).
A path that is a folder (or ends with a separator) saves inside it under a name made of the
prompt and the image's hash. Temporary files have short names, so any valid file name works.

**Secrets**: metadata should never hold keys; a defensive scrub still replaces the values of the
provider key variables (``OPENAI_API_KEY``, ``FAL_KEY``, ``REPLICATE_API_TOKEN`` …), credential
headers and key-shaped strings with ``[redacted]`` before anything is written.
"""

from __future__ import annotations

import functools
import json
import os
import re
import struct
import tempfile
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._c2pa import png_chunks
from ._metadata import (  # noqa: F401  (re-exported: saved metadata is read and written here)
    REDACTED,
    SIMULATED_NOTE,
    _full_metadata,
    build_metadata,
    parameters_text,
    print_dpi,
    scrub,
    sent_seed,
)
from .errors import InvalidRequest

if TYPE_CHECKING:
    from .result import GeneratedImage

__all__ = ["build_metadata", "parameters_text", "read_metadata", "save_image", "sidecar_path"]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
METADATA_KEY = "modelglass"
PARAMETERS_KEY = "parameters"
SIDECAR_SUFFIX = ".modelglass.json"

_NATIVE = {"image/png": ".png", "image/jpeg": ".jpg", "image/webp": ".webp"}
_SUFFIX_FORMAT = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}
_COMPRESS_OVER = 8 * 1024



# -- PNG chunks -----------------------------------------------------------------------------------
def _chunk(ctype: bytes, body: bytes) -> bytes:
    return (struct.pack(">I", len(body)) + ctype + body
            + struct.pack(">I", zlib.crc32(ctype + body) & 0xFFFFFFFF))


def _text_chunk(key: str, text: str, *, itxt: bool = False) -> bytes:
    if not itxt:
        try:
            return _chunk(b"tEXt", key.encode("latin-1") + b"\0" + text.encode("latin-1"))
        except UnicodeEncodeError:
            pass
    raw = text.encode("utf-8")
    compressed = len(raw) > _COMPRESS_OVER
    body = zlib.compress(raw) if compressed else raw
    return _chunk(b"iTXt", key.encode("latin-1") + b"\0" + bytes([int(compressed), 0])
                  + b"\0\0" + body)


def _read_text_chunk(ctype: bytes, body: bytes) -> tuple[str, str] | None:
    key, sep, rest = body.partition(b"\0")
    if not sep:
        return None
    try:
        if ctype == b"tEXt":
            return key.decode("latin-1"), rest.decode("latin-1")
        if ctype == b"zTXt":
            return key.decode("latin-1"), zlib.decompress(rest[1:]).decode("latin-1")
        if ctype == b"iTXt":
            flag = rest[0]
            _lang, _, rest = rest[2:].partition(b"\0")
            _translated, _, text = rest.partition(b"\0")
            return key.decode("latin-1"), (zlib.decompress(text) if flag else text).decode("utf-8")
    except (zlib.error, UnicodeDecodeError, IndexError):
        return None
    return None


def png_text(data: bytes) -> dict[str, str]:
    """Every text chunk of a PNG (``tEXt``, ``zTXt``, ``iTXt``), keyword → text."""
    out: dict[str, str] = {}
    for ctype, start, end in png_chunks(data):
        if ctype in (b"tEXt", b"zTXt", b"iTXt"):
            found = _read_text_chunk(ctype, data[start + 8:end - 4])
            if found:
                out.setdefault(*found)
    return out


def _phys_chunk(dpi: int) -> bytes:
    """A pHYs chunk: ``dpi`` as pixels per metre (the unit PNG knows), both axes."""
    ppm = round(dpi / 0.0254)
    return _chunk(b"pHYs", struct.pack(">IIB", ppm, ppm, 1))


def _with_text(png: bytes, texts: list[bytes]) -> bytes:
    """``png`` with ``texts`` spliced in before the first IDAT; older copies of our keys dropped
    (and the provider's pHYs, when we bring our own)."""
    ours = (PARAMETERS_KEY.encode(), METADATA_KEY.encode())
    new_phys = any(t[4:8] == b"pHYs" for t in texts)
    parts = [png[:8]]
    inserted = False
    for ctype, start, end in png_chunks(png):
        if ctype in (b"tEXt", b"zTXt", b"iTXt") and png[start + 8:end - 4].split(b"\0", 1)[0] in ours:
            continue
        if ctype == b"pHYs" and new_phys:
            continue
        if ctype == b"IDAT" and not inserted:
            parts.extend(texts)
            inserted = True
        parts.append(png[start:end])
    return b"".join(parts)


def _to_png(data: bytes) -> bytes:
    import io

    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        keep = im.mode if im.mode in ("RGB", "RGBA", "L", "LA", "P", "I;16") else (
            "RGBA" if "A" in im.getbands() else "RGB")
        out = im if im.mode == keep else im.convert(keep)
        buf = io.BytesIO()
        icc = im.info.get("icc_profile")
        out.save(buf, "PNG", **({"icc_profile": icc} if icc else {}))
        return buf.getvalue()


def _convert(data: bytes, fmt: str, *, dpi: int | None = None) -> bytes:
    import io

    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        if im.format == fmt and not dpi:
            return data  # already in the requested format: keep the provider's bytes
        out = im.convert("RGB") if fmt == "JPEG" and im.mode != "RGB" else im
        buf = io.BytesIO()
        icc = im.info.get("icc_profile")
        extra: dict[str, Any] = {"icc_profile": icc} if icc else {}
        if fmt == "WEBP":
            extra["lossless"] = True
        else:
            extra["quality"] = 95
        if dpi:
            extra["dpi"] = (dpi, dpi)
        out.save(buf, fmt, **extra)
        return buf.getvalue()


# -- files ----------------------------------------------------------------------------------------
def sidecar_path(path: str | os.PathLike[str]) -> Path:
    """Where the provenance of an image saved at ``path`` goes when it is not embedded: the
    whole file name plus ``.modelglass.json``, so every image file has its own. A name too long
    for the file system keeps its start and a hash of the whole.

    >>> sidecar_path("out/a.jpg").name
    'a.jpg.modelglass.json'
    """
    p = Path(path)
    name = p.name + SIDECAR_SUFFIX
    if len(os.fsencode(name)) > _NAME_MAX:
        import hashlib

        digest = hashlib.sha256(os.fsencode(p.name)).hexdigest()[:16]
        keep = _NAME_MAX - len(SIDECAR_SUFFIX) - len(digest) - 1
        head = os.fsdecode(os.fsencode(p.name)[:keep]).rstrip("\ufffd")
        name = f"{head}-{digest}{SIDECAR_SUFFIX}"
    return p.with_name(name)


def _legacy_sidecar_path(path: Path) -> Path:
    return path.with_name(path.stem + SIDECAR_SUFFIX)


_NAME_MAX = 255


@functools.cache
def _umask() -> int:
    # Reading the umask means setting it; do it once, not on every save from every thread.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _write(path: Path, data: bytes, *, overwrite: bool = True) -> None:
    # Write then rename, so a reader never sees half a file. The temporary name is short (a
    # 255-byte target name must still work) and hidden.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".mg-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        # mkstemp makes the file 0600; a saved image gets the usual mode under the umask.
        os.chmod(tmp, 0o666 & ~_umask())
        if overwrite:
            os.replace(tmp, path)
        else:
            _place_new(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _place_new(tmp: str, path: Path) -> None:
    """Move ``tmp`` to ``path`` only if ``path`` does not exist, atomically where the file
    system has hard links (the link fails on an existing name)."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise _exists(path) from None
    except OSError:  # no hard links here (some network and FAT file systems)
        if path.exists():
            raise _exists(path) from None
        os.replace(tmp, path)
        return
    os.unlink(tmp)


def _exists(path: Path) -> InvalidRequest:
    return InvalidRequest(f"{path} already exists; modelglass never overwrites a file. Pass "
                          f"overwrite=True, or choose another name (or a folder to save into)",
                          field="path")


def _check_free(paths: list[Path], overwrite: bool) -> None:
    if overwrite:
        return
    for p in paths:
        if p.exists() or p.is_symlink():
            raise _exists(p)


def _in_folder(target: Path, image: GeneratedImage, mime: str, *, folder: bool) -> Path:
    """``target`` when it names a file; inside it, under a made-up name, when it is a folder
    (or ``folder``: the path was written with a trailing separator)."""
    if not (folder or target.is_dir()):
        return target
    request = image.metadata.get("request")
    prompt = str(request.get("prompt") or "") if isinstance(request, Mapping) else ""
    slug = re.sub(r"[^a-z0-9]+", "-", prompt.lower()).strip("-")[:48] or "image"
    return target / f"{slug}-{image.sha256[:10]}{_NATIVE.get(mime, '.png')}"


def _sniff(data: bytes) -> str:
    if data.startswith(PNG_SIGNATURE):
        return "image/png"
    if data.startswith(b"\xff\xd8"):
        return "image/jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return ""


def save_image(image: GeneratedImage, path: str | os.PathLike[str], *,
               overwrite: bool = False) -> Path:
    """Write ``image`` to ``path`` with its provenance; return the path actually written.

    See the module docstring for what each suffix gets. Parent folders are created. An existing
    file (image or sidecar) is never replaced unless ``overwrite`` is True:
    :class:`~modelglass.errors.InvalidRequest` (``field="path"``) says so, and nothing is
    written. A folder as ``path`` saves inside it.

    >>> r.images[0].save("out/lighthouse.png")         # doctest: +SKIP
    PosixPath('out/lighthouse.png')
    """
    mime = _sniff(image.data) or image.mime
    target = _in_folder(Path(path), image, mime,
                        folder=os.fspath(path).endswith((os.sep, "/")))
    suffix = target.suffix.lower()
    meta = _full_metadata(image)
    params = scrub(parameters_text(meta))
    if meta["image"]["c2pa"]:
        native = _NATIVE.get(mime, suffix or ".bin")
        if _SUFFIX_FORMAT.get(suffix) != _SUFFIX_FORMAT.get(native):
            target = target.with_suffix(native)
        meta["saved"] = {"format": mime, "rewritten": False,
                         "why": "the provider's bytes carry C2PA content credentials"}
        return _save_with_sidecar(target, image.data, meta, params, overwrite=overwrite)
    if suffix in ("", ".png"):
        target = target.with_suffix(".png")
        png = image.data if mime == "image/png" else _to_png(image.data)
        meta["saved"] = {"format": "image/png", "rewritten": mime != "image/png",
                         "metadata": "png text chunks"}
        texts = [_text_chunk(PARAMETERS_KEY, params),
                 _text_chunk(METADATA_KEY, json.dumps(meta, ensure_ascii=False, default=str),
                             itxt=True)]
        if meta.get("dpi"):
            texts.append(_phys_chunk(int(meta["dpi"])))
        target.parent.mkdir(parents=True, exist_ok=True)
        _write(target, _with_text(png, texts), overwrite=overwrite)
        return target
    fmt = _SUFFIX_FORMAT.get(suffix)
    if fmt is None:
        raise InvalidRequest(f"cannot save an image as {suffix!r}: use .png (provenance "
                             "embedded) or .jpg / .jpeg / .webp (provenance in a "
                             f"{SIDECAR_SUFFIX} sidecar)", field="path")
    data = _convert(image.data, fmt, dpi=meta.get("dpi"))
    meta["saved"] = {"format": f"image/{fmt.lower()}", "rewritten": data is not image.data,
                     "metadata": "sidecar"}
    return _save_with_sidecar(target, data, meta, params, overwrite=overwrite)


def _save_with_sidecar(target: Path, data: bytes, meta: dict[str, Any], params: str, *,
                       overwrite: bool = False) -> Path:
    side = sidecar_path(target)
    _check_free([target, side], overwrite)  # both free, before either is written
    target.parent.mkdir(parents=True, exist_ok=True)
    _write(target, data, overwrite=overwrite)
    doc = {**meta, "parameters": params, "file": target.name}
    _write(side, (json.dumps(doc, indent=2, ensure_ascii=False, default=str)
                  + "\n").encode("utf-8"), overwrite=True)
    return target


def check_writable_folder(folder: str | os.PathLike[str], *, option: str = "path") -> Path:
    """Make sure ``folder`` exists (creating it and its parents) and a file can be written in
    it; raise :class:`~modelglass.errors.InvalidRequest` naming ``option`` otherwise. Meant to
    run *before* a paid call, so an image is never paid for and then cannot be saved."""
    p = Path(folder)
    try:
        if p.exists() and not p.is_dir():
            raise InvalidRequest(f"{option} {p} is a file, not a folder; give a folder to save "
                                 "the images into", field=option.lstrip("-"))
        p.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=p, prefix=".mg-", suffix=".probe")
        os.close(fd)
        os.unlink(probe)
    except InvalidRequest:
        raise
    except OSError as exc:
        raise InvalidRequest(f"{option} {p} cannot be used to save images ({exc.strerror or exc}); "
                             "nothing was sent. Choose a folder you can write to",
                             field=option.lstrip("-")) from None
    return p


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The modelglass provenance of a saved image: its PNG ``modelglass`` chunk, else its sidecar.

    Also accepts the sidecar's own path. Raises ``FileNotFoundError`` when the file does not
    exist and ``ValueError`` when it holds no modelglass provenance.
    """
    p = Path(path)
    if p.name.endswith(SIDECAR_SUFFIX):
        return json.loads(p.read_text("utf-8"))  # type: ignore[no-any-return]
    data = p.read_bytes()
    if data.startswith(PNG_SIGNATURE):
        text = png_text(data).get(METADATA_KEY)
        if text is not None:
            return json.loads(text)  # type: ignore[no-any-return]
    side = sidecar_path(p)
    if side.exists():
        return json.loads(side.read_text("utf-8"))  # type: ignore[no-any-return]
    legacy = _legacy_sidecar_path(p)  # older saves: <stem>.modelglass.json, shared by suffixes
    if legacy.exists():
        doc = json.loads(legacy.read_text("utf-8"))
        if isinstance(doc, dict) and doc.get("file") == p.name:
            return doc
    raise ValueError(f"{p} holds no modelglass provenance: no {METADATA_KEY!r} PNG chunk and no "
                     f"{side.name} sidecar")
