"""The job engine: one state machine per generate call, driven sync or async.

`JobEvent`, `JobState`, `EventSink` and `Resume` are the contract shared with the batch
runner and the CLI (see `_events`).
"""

from modelglass.jobs._events import EventSink, JobEvent, JobState, Resume

__all__ = ["BatchReport", "EventSink", "JobEvent", "JobOutcome", "JobState", "Journal",
           "ProviderLimit", "ResultCache", "Resume"]

# batch runner names (generate_many / agenerate_many, docs/batch.md), imported on first use
_BATCH = {"BatchReport": "_batch", "JobOutcome": "_batch", "ProviderLimit": "_schedule",
          "ResultCache": "_cache", "Journal": "_journal"}


def __getattr__(name: str) -> object:
    if name in _BATCH:
        import importlib

        value = getattr(importlib.import_module(f"modelglass.jobs.{_BATCH[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'modelglass.jobs' has no attribute {name!r}")
