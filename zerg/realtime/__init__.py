"""The event bus and the websocket hub: how a change reaches the clients watching it.

- ``events``: the typed events, the bus interface and its in-memory bus, and
  ``announce`` (publish once a session commits);
- ``redis_bus`` and ``outbox``: the bus shared between processes through Redis;
- ``backend``: gives each app its bus, the one module that imports both;
- ``hub``: this process's websocket connections and the topics they watch;
- ``connection``: one websocket client's send queue, writer and end;
- ``keepalive``: the pings that find the clients that are gone.

The websocket endpoint itself, a transport, is ``zerg.api.websocket``.
"""
