"""Outcome checks: does each image deliver what the request asked for?

>>> r = client.generate('a shop sign that says "OPEN"', check=True, on_fail="retry")  # doctest: +SKIP
>>> r.checks                                                          # doctest: +SKIP
[CheckResult(blank: pass, ...), CheckResult(same-bytes: pass, ...),
 CheckResult(text: pass, score 1.00, expected 'OPEN', observed 'open')]

Built-in checks (``check=True`` runs each one that applies):

- ``"text"`` (:class:`TextCheck`): OCR (RapidOCR on onnxruntime, ``pip install
  'modelglass[check]'``; its models ship in the wheel, nothing is downloaded) against the
  prompt's quoted text or ``expect_text``; CVTG-2K's word accuracy and normalized edit distance.
- ``"blank"`` (:class:`BlankCheck`): a (nearly) uniform image.
- ``"same-bytes"`` (:class:`SameBytesCheck`): the same bytes as another image of the job.

Your own judge is any object with ``name``, ``applies(request)`` and ``check(image, request)``
returning a :class:`CheckResult` (:class:`Checker`); pass it as ``check=[judge]`` or beside the
built-ins, ``check=["text", judge]``. Importing this package loads no OCR.
"""

from ._base import VERDICTS, Checker, CheckResult, Verdict
from ._cheap import BlankCheck, SameBytesCheck
from ._run import BUILTIN, ON_FAIL, Checking, builtin_checks, checking_of, passed, run_checks
from ._text import MIN_CONFIDENCE, TextCheck, expected_text, prompt_class, quoted_text

__all__ = [
    "BUILTIN",
    "MIN_CONFIDENCE",
    "ON_FAIL",
    "VERDICTS",
    "BlankCheck",
    "CheckResult",
    "Checker",
    "Checking",
    "SameBytesCheck",
    "TextCheck",
    "Verdict",
    "builtin_checks",
    "checking_of",
    "expected_text",
    "passed",
    "prompt_class",
    "quoted_text",
    "run_checks",
]
