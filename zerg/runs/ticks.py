"""An APScheduler executor that tells each job which tick it runs for.

APScheduler 3 calls a job function with the job's own arguments only. A job
that worked its tick out from the clock instead could name the wrong one: when
it runs late by an interval or more (a grace at or above the interval allows
that), the clock points at the next tick, which is then dropped as a
duplicate. So a job asks for its tick with a keyword argument whose value is
:data:`SCHEDULED_TIME`, and :class:`TickExecutor` puts there the time its
trigger fired for.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from typing import Final

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.job import Job


class _ScheduledTime:
    def __repr__(self) -> str:
        return "SCHEDULED_TIME"


# In a job's keyword arguments: "the time this run was scheduled for".
SCHEDULED_TIME: Final[Any] = _ScheduledTime()


class TickExecutor(ThreadPoolExecutor):  # type: ignore[misc]
    """A thread pool that fills in the jobs' SCHEDULED_TIME arguments."""

    def _do_submit_job(self, job: Job, run_times: list[datetime]) -> None:
        if any(value is SCHEDULED_TIME for value in job.kwargs.values()):
            # Jobs coalesce, so the run times due are one: the latest tick.
            super()._do_submit_job(_Firing(job, run_times[-1]), run_times)
        else:
            super()._do_submit_job(job, run_times)


class _Firing:
    """The job as APScheduler's ``run_job`` sees it, its tick among its keyword arguments.

    Everything else (id, function, misfire grace, name) is the job's own, so
    the misfire check, the logging and the instance count are unchanged.
    """

    def __init__(self, job: Job, scheduled_for: datetime) -> None:
        self._job = job
        self.kwargs = {
            name: scheduled_for if value is SCHEDULED_TIME else value
            for name, value in job.kwargs.items()
        }

    def __getattr__(self, name: str) -> Any:
        return getattr(self._job, name)

    def __str__(self) -> str:
        return str(self._job)
