"""Runs: an agent answering a thread, from the request that starts it to the stored reply.

- ``states``: the state machine of a run's status, kept by conditional
  updates, and what every end records on the run's agent;
- ``domain``: what transports ask of runs (queue, cancel, list) and what
  follows a run's end (the thread's next run, a follow-up);
- ``lifecycle``: begin (or resume), finish and fail a run, and end the runs
  of processes that died (the reaper) or that their own process lost (the
  sweep); all plain functions taking a session;
- ``context``: the messages and options a run sends its model;
- ``execution_state``: what a worker carries through a run;
- ``tool_calls``: a run's rounds of tool calls and their results, as stored;
- ``approvals``: tool calls that wait for a person, and the runs waiting with
  them (park, decide, time out, end), and the answer every end gives the
  calls left without one;
- ``pool``: the bounded pool of worker threads that executes queued runs, with
  their cancel switches;
- ``execution``: what one worker does with one run: begin, converse with the
  model (``streaming`` one reply, ``tool_round`` its calls), finish;
- ``scheduler`` and ``ticks``: the jobs that start runs on a schedule.

Schedules themselves (``zerg.cron``) and the model services a run talks to
(``zerg.providers``) live outside this package: agents validate against
them, and runs are built on agents, so inside it they would make ``runs``
both above and below ``zerg.agents``.
"""
