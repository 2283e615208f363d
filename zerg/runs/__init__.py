"""Runs: an agent answering a thread, from the request that starts it to the stored reply.

- ``domain``: every change to a run (queue, begin, finish, fail, cancel,
  interrupt) and the context a run sends its model, as plain functions taking
  a session;
- ``pool``: the bounded pool of worker threads that executes queued runs, with
  their cancel switches;
- ``execution``: what one worker does with one run: begin, stream, finish;
- ``scheduler`` and ``cron``: the jobs that start runs on a schedule;
- ``providers``: the model services a run talks to.

This module imports none of them, so that ``zerg.schemas`` can use ``cron``
without pulling in the rest.
"""
