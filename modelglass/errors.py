"""The modelglass error tree. Every error says what went wrong, where, and what to do next.

    ModelglassError
    ├── CatalogError            a catalog file is wrong (file:line and field path)
    ├── InvalidRequest          a request field is wrong, or strict mode refused a fate
    ├── PayloadInvalid          a planned payload breaks the provider's published schema (our bug)
    ├── NoEligibleModel         routing found nothing; carries why each candidate failed
    │   └── StrictRefused       strict mode refused the pinned offer (also an InvalidRequest)
    ├── BudgetExceeded          the estimate would pass a limit; nothing was sent
    ├── StorageError            a batch's files cannot be written (disk full, a file in the way)
    │   └── JournalError        the journal is held by another run, damaged, or of the other mode
    ├── ProviderUnavailable     no key / no client installed / no GPU / weights not present
    ├── ContentRejected         the provider refused the content (never retried)
    ├── ProviderError           the provider failed; ``retryable`` says whether another try may help
    │   ├── RateLimited         429; ``retry_after`` seconds when the provider said
    │   ├── GenerationTimeout   the per-job deadline or a client timeout ran out
    │   ├── EmptyResult         the provider answered without usable images
    │   ├── OutcomeUnknown      a create may have run (and been billed); it was not re-sent
    │   └── DownloadFailed      a paid image could not be downloaded; carries what was fetched
    └── AllAttemptsFailed       every ranked offer failed; carries every attempt
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .result import Attempt

__all__ = [
    "AllAttemptsFailed",
    "BudgetExceeded",
    "CatalogError",
    "ContentRejected",
    "DownloadFailed",
    "EmptyResult",
    "GenerationTimeout",
    "InvalidRequest",
    "JournalError",
    "ModelglassError",
    "NoEligibleModel",
    "OutcomeUnknown",
    "PayloadInvalid",
    "ProviderError",
    "ProviderUnavailable",
    "RateLimited",
    "StorageError",
    "StrictRefused",
]


class ModelglassError(Exception):
    """Base of every error modelglass raises on purpose.

    ``hint`` (when set) is the next step to take, shown on its own line by the CLI.
    """

    hint: str | None = None


class CatalogError(ModelglassError):
    """A catalog file failed to load or cross-check.

    ``problems`` lists every problem found, each already formatted as
    ``path:line: field.path: message``.
    """

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        self.problems = problems or [message]
        super().__init__(message if problems is None else "\n".join(problems))


class InvalidRequest(ModelglassError, ValueError):
    """A request field, argument, option or input file is invalid, or strict mode refused to
    approximate or drop a control. ``field`` names the field (or CLI option), ``path`` the file
    when one is at fault, ``hint`` what to do next."""

    path: str | None = None

    def __init__(self, message: str, field: str | None = None, *, path: str | None = None,
                 hint: str | None = None) -> None:
        self.field = field
        self.path = path
        if hint is not None:
            self.hint = hint
        super().__init__(message)


class PayloadInvalid(ModelglassError):
    """A planned payload breaks the provider's published input schema (``catalog/schemas``).

    This is modelglass's bug, never the caller's: the request was not sent. ``field`` names the
    first field at fault, ``offer`` the offer, ``problems`` every violation found.
    """

    def __init__(self, message: str, field: str | None = None, offer: str | None = None,
                 problems: list[str] | None = None) -> None:
        self.field, self.offer, self.problems = field, offer, list(problems or [])
        super().__init__(message)

    def __reduce__(self) -> Any:
        return (type(self), (str(self), self.field, self.offer, self.problems))


class NoEligibleModel(ModelglassError):
    """Routing found no offer that meets the hard constraints.

    ``rejected`` maps ``model@provider`` to the reason each candidate failed. ``str(exc)`` leads
    with what to do (``lead``), then a few lines grouping the rejections by reason;
    :meth:`full_message` lists every offer.
    """

    def __init__(self, message: str, rejected: dict[str, str] | None = None, *,
                 lead: str | None = None) -> None:
        self.rejected = rejected or {}
        self.headline = message
        self.lead = lead
        super().__init__(self.summary())

    def summary(self, per_constraint: int = 2) -> str:
        """The lead, the headline and the rejections grouped by constraint and reason."""
        lines = [self.lead] if self.lead else []
        lines.append(self.headline)
        groups: dict[str, dict[str, list[str]]] = {}
        pinned_away = 0
        for key, why in self.rejected.items():
            constraint, _, reason = why.partition(": ")
            if constraint == "pin" and len(self.rejected) > 1:
                pinned_away += 1
                continue
            groups.setdefault(constraint, {}).setdefault(reason or why, []).append(key)
        hidden = 0
        for constraint, reasons in groups.items():
            ordered = sorted(reasons.items(), key=lambda kv: (-len(kv[1]), kv[0]))
            for reason, keys in ordered[:per_constraint]:
                who = keys[0] if len(keys) == 1 else f"{len(keys)} offers, e.g. {keys[0]}"
                lines.append(f"  - {constraint}: {reason} ({who})")
            hidden += sum(len(k) for _, k in ordered[per_constraint:])
        if pinned_away:
            lines.append(f"  ({pinned_away} offers of other models/providers left out by the pin)")
        if hidden:
            lines.append(f"  … {hidden} more offers rejected for other reasons: "
                         "exc.full_message() (CLI: modelglass --verbose ...) lists every one")
        return "\n".join(lines)

    def full_message(self) -> str:
        """Every rejected offer with its reason."""
        lines = [self.lead] if self.lead else []
        lines.append(self.headline)
        lines.extend(f"  - {key}: {why}" for key, why in sorted(self.rejected.items()))
        return "\n".join(lines)


class StrictRefused(InvalidRequest, NoEligibleModel):
    """strict=True refused the pinned offer(s): the request cannot be served as asked there.

    An :class:`InvalidRequest` (change the request) and a :class:`NoEligibleModel` (nothing was
    routed) at once; ``field`` names the control that was refused.
    """

    def __init__(self, message: str, rejected: dict[str, str] | None = None, *,
                 lead: str | None = None, field: str | None = None) -> None:
        self.field = field
        NoEligibleModel.__init__(self, message, rejected, lead=lead)


class BudgetExceeded(ModelglassError):
    """The estimated cost would exceed ``max_cost_usd`` or a shared ``Budget``; nothing was sent."""

    def __init__(self, message: str, estimate_usd: float | None = None,
                 limit_usd: float | None = None) -> None:
        self.estimate_usd = estimate_usd
        self.limit_usd = limit_usd
        super().__init__(message)


class StorageError(ModelglassError):
    """A batch cannot write its files: the disk is full (or a file size limit was hit), a folder
    is not writable, or a file stands where a folder must be. ``path`` names it. Raised before
    anything more is sent; what was paid for is in the journal, and the same command resumes
    once the cause is fixed."""

    def __init__(self, message: str, *, path: str | None = None) -> None:
        self.path = path
        super().__init__(message)


class JournalError(StorageError):
    """A batch journal cannot be used: another run holds it (``holder``: its pid, host and start
    time), it is damaged or not a journal at all, it cannot be written, or it was written by a
    simulated run and this one is real (or the reverse). The message says what to do."""

    def __init__(self, message: str, *, path: str | None = None,
                 holder: dict[str, Any] | None = None) -> None:
        self.holder = holder
        super().__init__(message, path=path)


class ProviderUnavailable(ModelglassError):
    """A provider cannot be used here: no key, its client is not installed, no GPU, no weights."""

    def __init__(self, message: str, provider: str | None = None) -> None:
        self.provider = provider
        super().__init__(message)


class ContentRejected(ModelglassError):
    """The provider refused the prompt or the output. Never retried, never falls back."""

    def __init__(self, message: str, provider: str | None = None, code: str | None = None) -> None:
        self.provider = provider
        self.code = code
        super().__init__(message)


class ProviderError(ModelglassError):
    """The provider failed. ``retryable`` says whether the same call may succeed later;
    ``status`` is the HTTP status when there was one; ``body`` a short excerpt of the reply."""

    retryable_default = False

    def __init__(self, message: str, *, provider: str | None = None, status: int | None = None,
                 body: Any = None, retryable: bool | None = None) -> None:
        self.provider = provider
        self.status = status
        self.body = body
        self.retryable = self.retryable_default if retryable is None else retryable
        super().__init__(message)


class RateLimited(ProviderError):
    """HTTP 429. ``retry_after`` is the delay the provider asked for, in seconds, if any."""

    retryable_default = True

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: Any) -> None:
        self.retry_after = retry_after
        super().__init__(message, **kw)


class GenerationTimeout(ProviderError):
    """A deadline ran out before the provider delivered images."""

    retryable_default = True


class EmptyResult(ProviderError):
    """The provider answered but delivered no usable image (missing, expired or corrupt)."""

    retryable_default = False


class OutcomeUnknown(ProviderError):
    """A create (OpenAI POST, fal submit, Replicate create) was sent, but whether the provider ran
    it is unknown: the connection dropped, the reply was cut short, or it did not come in time.

    The provider may have billed it, so ``possibly_charged`` is True and it is never re-sent
    blindly: ``retryable`` is False, the budget keeps the reservation (``estimate_usd``), and the
    client falls back to another offer only with ``allow_double_payment=True``. ``request_id`` is
    the provider's id for the job when it is known (then it can be looked up or cancelled).
    ``stage`` names the step that failed (``"create"``, ``"reply"``).
    """

    retryable_default = False
    possibly_charged = True

    def __init__(self, message: str, *, request_id: str | None = None,
                 estimate_usd: float | None = None, stage: str = "create", **kw: Any) -> None:
        self.request_id = request_id
        self.estimate_usd = estimate_usd
        self.stage = stage
        kw.setdefault("retryable", False)
        super().__init__(message, **kw)


class DownloadFailed(ProviderError):
    """An image the provider made (and billed) could not be downloaded or verified.

    ``url`` is the image's URL (may carry a signed token: it never appears in the message, which
    names only the host); ``request_id`` and ``cost_usd`` identify the paid job; ``fetched`` holds
    the images of the same call that *were* downloaded, as ``(index, Fetched)`` pairs, so nothing
    paid for is thrown away; ``index`` is the failed image's position; ``reason`` is the underlying
    modelglass error.
    """

    retryable_default = False

    def __init__(self, message: str, *, url: str | None = None, request_id: str | None = None,
                 cost_usd: float | None = None, index: int | None = None,
                 fetched: list[tuple[int, Any]] | None = None,
                 reason: BaseException | None = None, **kw: Any) -> None:
        self.url = url
        self.request_id = request_id
        self.cost_usd = cost_usd
        self.index = index
        self.fetched = list(fetched or [])
        self.reason = reason
        super().__init__(message, **kw)

    def __repr__(self) -> str:  # the URL may be signed: never in a repr
        return f"DownloadFailed({str(self)!r})"


class AllAttemptsFailed(ProviderError):
    """The offers tried failed in different ways. ``attempts`` holds each try with its error.

    When every attempt failed the same way, ``generate`` raises that error itself (a pinned 429
    is a :class:`RateLimited`), so this one means the failures differ. It is still catchable by
    what they share: :meth:`of` gives the subclass that is also the attempts' most specific
    common error class (two kinds of :class:`RateLimited` stay a :class:`RateLimited`).
    ``retryable`` is True when every attempt's failure was retryable; ``retry_after`` is the
    longest wait a provider asked for.
    """

    def __init__(self, message: str, attempts: list[Attempt], *, retryable: bool = False,
                 retry_after: float | None = None) -> None:
        self.attempts = attempts
        self._message = message
        lines = [message]
        lines.extend(f"  - {describe_attempt(a)}" for a in attempts)
        super().__init__("\n".join(lines), retryable=retryable)
        self.retry_after = retry_after

    @classmethod
    def of(cls, common: type[BaseException]) -> type[AllAttemptsFailed]:
        """``AllAttemptsFailed`` that is also a ``common`` (when that is narrower than
        :class:`ProviderError`), so ``except common`` catches it."""
        if not issubclass(common, ProviderError) or common is ProviderError or \
                issubclass(cls, common):
            return cls
        return _all_failed_as(common)

    _common: str | None = None  # the error class a subclass from :meth:`of` also is

    def __reduce__(self) -> Any:  # the dynamic subclasses travel between processes too (Ray)
        return (_rebuild_all_failed, (type(self)._common, self._message, self.attempts,
                                      self.retryable, self.retry_after), dict(self.__dict__))


def describe_attempt(a: Attempt) -> str:
    """One line for an attempt: ``flux-dev@fal try 2 (call 1 of 2): the error``."""
    chunk = f" (call {a.chunk + 1} of {a.chunks})" if a.chunks > 1 else ""
    paid = " [possibly charged]" if a.possibly_charged else ""
    return f"{a.model}@{a.provider} try {a.number}{chunk}: {a.error}{paid}"


_ALL_FAILED_AS: dict[type[BaseException], type[AllAttemptsFailed]] = {}


def _all_failed_as(common: type[BaseException]) -> type[AllAttemptsFailed]:
    cls = _ALL_FAILED_AS.get(common)
    if cls is None:
        cls = type("AllAttemptsFailed", (AllAttemptsFailed, common),
                   {"__doc__": f"AllAttemptsFailed whose attempts all were {common.__name__}.",
                    "__module__": __name__, "__qualname__": f"AllAttemptsFailed[{common.__name__}]",
                    "_common": common.__name__})
        _ALL_FAILED_AS[common] = cls
    return cls


def _rebuild_all_failed(common: str | None, message: str, attempts: list[Attempt],
                        retryable: bool, retry_after: float | None) -> AllAttemptsFailed:
    base = globals().get(common) if common is not None else None
    cls = AllAttemptsFailed.of(base) if isinstance(base, type) else AllAttemptsFailed
    return cls(message, attempts, retryable=retryable, retry_after=retry_after)
