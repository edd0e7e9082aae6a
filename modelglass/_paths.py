"""Files the user names: read as text, or checked before writing. A path that cannot be used is
the user's to fix, so it is an :class:`~modelglass.errors.InvalidRequest` naming the path and the
option (exit 2 in the CLI), never an ``OSError`` or ``UnicodeDecodeError`` traceback.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import InvalidRequest

__all__ = ["check_output_file", "file_mistake", "read_text"]

_OUTPUT_HINT = "give a file name in a folder that exists (or can be made) and that you can write to"


def read_text(path: str | os.PathLike[str], *, field: str, what: str = "file") -> str:
    """The text of ``path`` as UTF-8 (a leading byte-order mark is accepted and dropped)."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        why = ("is a folder, not a file" if isinstance(exc, IsADirectoryError) or p.is_dir()
               else exc.strerror or str(exc))
        raise InvalidRequest(f"cannot read the {what} {p}: {why}", field=field, path=str(p),
                             hint=f"check the path of the {what}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise InvalidRequest(f"{p}:{line}: the {what} is not UTF-8 text (byte "
                             f"0x{data[exc.start]:02x} at offset {exc.start}); is it a binary "
                             "file?", field=field, path=str(p),
                             hint=f"give a UTF-8 text {what}") from None


def check_output_file(path: str | os.PathLike[str], *, field: str, suffix: str = "") -> Path:
    """Make sure a file can be written at ``path`` (its folder made when missing), before any
    work is done for it; the path is returned. Nothing is left behind at ``path``. ``suffix``
    is the file type the hint suggests."""
    p = Path(path)
    if p.is_dir():
        raise InvalidRequest(f"cannot write {p}: it is a folder, not a file name", field=field,
                             path=str(p), hint=f"give a file name inside it, e.g. {p / 'name'}"
                             f"{suffix}")
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        existed = p.exists()
        with open(p, "ab"):
            pass
        if not existed:
            p.unlink()
    except OSError as exc:
        raise InvalidRequest(f"cannot write {p}: {exc.strerror or exc}",
                             field=field, path=str(p), hint=_OUTPUT_HINT) from None
    return p


def file_mistake(exc: BaseException) -> InvalidRequest | None:
    """The CLI's safety net: an ``OSError`` about a file the user named (a folder where a file
    belongs, no permission, a missing folder, a file that already exists) or a
    ``UnicodeDecodeError`` (a binary file where text belongs) as an :class:`InvalidRequest`
    naming the path; None for anything else (then it is not the user's to fix)."""
    if isinstance(exc, UnicodeDecodeError):
        return InvalidRequest(f"a file you gave is not UTF-8 text (byte "
                              f"0x{exc.object[exc.start]:02x} at offset {exc.start}); is it the "
                              "right file?", hint="give a UTF-8 text file (JSON lines or YAML)")
    if not isinstance(exc, OSError) or exc.filename is None:
        return None
    why = {IsADirectoryError: "is a folder, not a file",
           NotADirectoryError: "has a file where a folder belongs in its path",
           FileNotFoundError: "does not exist",
           PermissionError: "cannot be used here (permission denied)",
           FileExistsError: "already exists"}.get(type(exc), exc.strerror or str(exc))
    return InvalidRequest(f"{exc.filename} {why}", path=str(exc.filename),
                          hint="check the path: a readable file for an input; for an output, a "
                               "new file name in a folder you can write to")
