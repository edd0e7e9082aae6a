"""HTTP/1.1 messages for the lean transport (``_http11.py``): a request's bytes, a reply's head,
and how its body is framed. Pure (no I/O); every problem is a :class:`ProtocolProblem` that the
transport turns into the ``httpx`` module's own exception.

Why not ``h11``: it validates and tracks state through some 150 µs of Python per request and
reply (16 headers, a 60 KB JSON reply), ~5 % of a batch job's CPU; what the transport needs of
it is this much: write a request whose header names are tokens and whose values hold no line
breaks (header injection is refused before a byte leaves), and read a reply strictly — a
status line ``HTTP/1.x NNN``, ``name: value`` lines (no obsolete line folding), and the body's
framing by RFC 9112 §6.3: none for HEAD, 1xx, 204 and 304; ``Transfer-Encoding: chunked``;
``Content-Length`` (digits, every copy the same); else until the server closes.
"""

from __future__ import annotations

import re

__all__ = ["MAX_HEAD", "Head", "ProtocolProblem", "framing", "keeps_alive", "parse_chunk_size",
           "parse_head", "request_head"]

#: Largest reply head (status line and headers) read before giving up on it.
MAX_HEAD = 64 << 10

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_CTL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")  # control characters other than HTAB
_STATUS = re.compile(rb"HTTP/1\.([01]) ([0-9]{3})(?: ([^\x00-\x08\x0a-\x1f\x7f]*))?")
_TARGET_BAD = re.compile(rb"[\x00-\x20\x7f]")
_HEX = re.compile(rb"[0-9A-Fa-f]{1,16}")


class ProtocolProblem(Exception):
    """The message breaks HTTP/1.1 (ours: local; the server's: remote)."""


def request_head(method: bytes, target: bytes, headers: list[tuple[bytes, bytes]]
                 ) -> tuple[bytes, int | None, bool, bool]:
    """The request line and headers, and what they say of the body: ``(head, content_length,
    chunked, close)``. Raises :class:`ProtocolProblem` for a method that is not a token, a
    target with spaces or controls, a header name that is not a token, or a value with a control
    character (a CR or LF would smuggle in a header of its own)."""
    if not _TOKEN.fullmatch(method):
        raise ProtocolProblem(f"illegal method {method[:40]!r}")
    if not target or _TARGET_BAD.search(target):
        raise ProtocolProblem(f"illegal request target {target[:80]!r}")
    parts = [method, b" ", target, b" HTTP/1.1\r\n"]
    length: int | None = None
    chunked = close = False
    for name, value in headers:
        if not _TOKEN.fullmatch(name):
            raise ProtocolProblem(f"illegal header name {name[:40]!r}")
        if _CTL.search(value):
            raise ProtocolProblem(f"illegal header value for {name.decode('latin-1')!r}: it "
                                  f"holds a control character (a line break?)")
        low = name.lower()
        if low == b"content-length":
            if not value.isdigit():
                raise ProtocolProblem(f"illegal Content-Length {value[:40]!r}")
            length = int(value)
        elif low == b"transfer-encoding":
            chunked = value.lower().rsplit(b",", 1)[-1].strip() == b"chunked"
            if not chunked:
                raise ProtocolProblem(f"unsupported Transfer-Encoding {value[:40]!r}")
        elif low == b"connection":
            close = b"close" in [t.strip() for t in value.lower().split(b",")]
        parts += (name, b": ", value, b"\r\n")
    parts.append(b"\r\n")
    return b"".join(parts), length, chunked, close


class Head:
    """A reply's status line and headers."""

    __slots__ = ("headers", "http10", "reason", "status")

    def __init__(self, status: int, reason: bytes, headers: list[tuple[bytes, bytes]],
                 http10: bool) -> None:
        self.status, self.reason, self.headers, self.http10 = status, reason, headers, http10


def parse_head(head: bytes) -> Head:
    """The status line and header lines of ``head`` (without its blank line)."""
    lines = head.split(b"\r\n")
    m = _STATUS.fullmatch(lines[0])
    if m is None:
        raise ProtocolProblem(f"malformed status line {lines[0][:80]!r}")
    headers: list[tuple[bytes, bytes]] = []
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep or not _TOKEN.fullmatch(name):  # obsolete line folding starts with a space
            raise ProtocolProblem(f"malformed header line {line[:80]!r}")
        value = value.strip(b" \t")
        if _CTL.search(value):
            raise ProtocolProblem(f"control character in the {name[:40]!r} header")
        headers.append((name, value))
    return Head(int(m.group(2)), m.group(3) or b"", headers, m.group(1) == b"0")


def framing(head: Head, method: bytes) -> tuple[str, int]:
    """How the reply's body is framed: ``("length", n)`` (n may be 0), ``("chunked", 0)`` or
    ``("close", 0)`` (until the server closes the connection)."""
    status = head.status
    if method == b"HEAD" or status < 200 or status in (204, 304):
        return "length", 0
    te = [v for n, v in head.headers if n.lower() == b"transfer-encoding"]
    if te:
        codings = [c.strip() for c in b",".join(te).lower().split(b",")]
        if codings[-1] != b"chunked" or codings.count(b"chunked") != 1:
            raise ProtocolProblem(f"unsupported Transfer-Encoding {b', '.join(te)[:80]!r}")
        return "chunked", 0
    lengths = {v.strip() for n, value in head.headers if n.lower() == b"content-length"
               for v in value.split(b",")}
    if lengths:
        if len(lengths) != 1:
            raise ProtocolProblem(f"conflicting Content-Length values {sorted(lengths)!r}")
        (value,) = lengths
        if not value.isdigit() or len(value) > 18:
            raise ProtocolProblem(f"illegal Content-Length {value[:40]!r}")
        return "length", int(value)
    return "close", 0


def keeps_alive(head: Head) -> bool:
    """Whether the connection may carry another request after this reply: the server keeps it
    open (HTTP/1.1 without ``Connection: close``; HTTP/1.0 only with ``Connection:
    keep-alive``) and the reply did not carry both ``Transfer-Encoding`` and ``Content-Length``
    (read as chunked, but a sign of response smuggling: RFC 9112 §6.3 has the client close)."""
    names = {n.lower() for n, _ in head.headers}
    if b"transfer-encoding" in names and b"content-length" in names:
        return False
    tokens = {t.strip() for n, v in head.headers if n.lower() == b"connection"
              for t in v.lower().split(b",")}
    if head.http10:
        return b"keep-alive" in tokens and b"close" not in tokens
    return b"close" not in tokens


def parse_chunk_size(line: bytes) -> int:
    """The size in a chunk's size line (extensions after ``;`` ignored)."""
    size = line.split(b";", 1)[0].strip(b" \t")
    if not _HEX.fullmatch(size):
        raise ProtocolProblem(f"malformed chunk size line {line[:40]!r}")
    return int(size, 16)
