"""The job engine: one state machine per generate call, driven sync or async.

`JobEvent`, `JobState`, `EventSink` and `Resume` are the contract shared with the batch
runner and the CLI (see `_events`).
"""

from modelglass.jobs._events import EventSink, JobEvent, JobState, Resume

__all__ = ["EventSink", "JobEvent", "JobState", "Resume"]
