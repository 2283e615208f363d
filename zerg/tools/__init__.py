"""Tool execution services: the registry, built-in tools and the MCP client.

Why a package of its own: tools run on behalf of a model inside a run, but
what they do (call a clock, fetch a URL, talk to an MCP server) has nothing to
do with HTTP routes, websockets or the run lifecycle. Keeping them in the
services layer lets the runner, the API and tests use one implementation, and
the architecture rule (arrows point down) keeps this package free of
``zerg.api``, ``zerg.realtime``, ``zerg.runs`` and storage imports. Settings
are passed in as arguments so the caller (config wiring, later) decides them.
"""
