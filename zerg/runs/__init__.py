"""Runs: an agent answering a thread, from the request that starts it to the stored reply.

- ``states``: the state machine of a run's status, kept by conditional
  updates, and what every end records on the run's agent;
- ``domain``: what transports ask of runs (queue, cancel, list) and what
  follows a run's end (the thread's next run, a follow-up);
- ``lifecycle``: begin, finish and fail a run, and end the runs of processes
  that died (the reaper) or that their own process lost (the sweep), with
  the context a run sends its model; all plain functions taking a session;
- ``pool``: the bounded pool of worker threads that executes queued runs, with
  their cancel switches;
- ``execution``: what one worker does with one run: begin, stream, finish;
- ``scheduler`` and ``ticks``: the jobs that start runs on a schedule.

Schedules themselves (``zerg.cron``) and the model services a run talks to
(``zerg.providers``) live outside this package: agents validate against
them, and runs are built on agents, so inside it they would make ``runs``
both above and below ``zerg.agents``.
"""
