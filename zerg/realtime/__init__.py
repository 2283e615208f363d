"""Events and the websocket: the app's event bus, its Redis backend, the hub and the endpoint."""
