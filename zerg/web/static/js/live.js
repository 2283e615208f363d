// The websocket client: one connection per page to /api/ws, resubscribed and
// resumed with last_event_id after a drop, so nothing is missed or doubled.
// With a token, each connection first gets a single-use ticket through the
// REST API: a browser cannot set headers on a handshake, and the token itself
// must never be in a URL (URLs are written to access logs).

import { AuthRequired, api, token } from "./api.js";

const RESYNC_ERROR = "reload the state";

export class Live {
  // onEvent(frame) gets every event frame; resync() reloads the page's state
  // through the REST API and is called on the first connection and whenever
  // the server cannot replay what was missed.
  constructor({ topics = [], onEvent, resync }) {
    this.topics = new Set(topics);
    this.onEvent = onEvent;
    this.resync = resync;
    this.lastEventId = null;
    this.socket = null;
    this.retry = 0;
    this.held = null;
    this.status = document.getElementById("live-status");
  }

  start() {
    this.connect();
    window.addEventListener("pagehide", () => this.socket?.close());
  }

  async connect() {
    const resuming = this.lastEventId !== null;
    this.show("connecting", resuming ? "Reconnecting…" : "Connecting…");
    const params = new URLSearchParams();
    if (token()) {
      try {
        params.set("ticket", (await api.post("/api/ws/tickets")).ticket);
      } catch (error) {
        // A refused token shows the prompt; anything else is retried like a drop.
        if (!(error instanceof AuthRequired)) this.retryLater();
        return;
      }
    }
    if (this.topics.size) params.set("initial_topics", [...this.topics].join(","));
    if (resuming) params.set("last_event_id", this.lastEventId);
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const requested = new Set(this.topics);
    const socket = new WebSocket(`${scheme}://${location.host}/api/ws?${params}`);
    this.socket = socket;
    socket.addEventListener("open", () => {
      this.retry = 0;
      // A fresh connection is live once the state is reloaded (see sync).
      if (resuming) this.show("live", "Live");
      const added = [...this.topics].filter((topic) => !requested.has(topic));
      this.sendSubscribe(added);
      // The server subscribes the initial topics before it reads any frame,
      // so the answer to this ping means they are all in place.
      if (!resuming) this.send({ type: "ping", message_id: "subscribed" });
    });
    socket.addEventListener("message", (message) => this.receive(JSON.parse(message.data)));
    socket.addEventListener("close", () => {
      if (this.socket !== socket) return;
      this.socket = null;
      this.retryLater();
    });
  }

  retryLater() {
    this.show("offline", "Offline: reconnecting…");
    const delay = Math.min(10000, 250 * 2 ** this.retry++);
    setTimeout(() => this.reconnect(), delay);
  }

  async reconnect() {
    // A refused handshake looks like any drop; a REST call tells whether the
    // token is the reason (a server that wants one now), and shows the prompt.
    if (this.retry > 1 && !token()) {
      try {
        await api.get("/api/models");
      } catch {
        // Not reachable yet (or the prompt is up): try again later either way.
      }
    }
    this.connect();
  }

  receive(frame) {
    if (frame.type === "pong" && frame.message_id === "subscribed") {
      this.sync();
      return;
    }
    if (frame.type === "error") {
      this.onError(frame);
      return;
    }
    // Subscription answers (thread_history, agent_state, subscribed) are not
    // used: the REST load after subscribing covers them, and on a resumed
    // connection the replayed events are the authoritative history.
    if (!frame.event_id) return;
    this.lastEventId = frame.event_id;
    if (this.held) this.held.push(frame);
    else this.onEvent(frame);
  }

  onError(frame) {
    const topic = frame.details?.topic;
    if (topic) {
      // A topic of something deleted meanwhile: stop asking for it.
      this.topics.delete(topic);
      return;
    }
    if (frame.error.includes(RESYNC_ERROR)) {
      this.sync();
      return;
    }
    console.warn("websocket error frame", frame);
  }

  // Reload state through REST while events wait, then apply the events: each
  // carries the whole object, so the newest one wins over an older load.
  async sync() {
    if (this.held) return;
    this.held = [];
    try {
      await this.resync();
    } finally {
      const held = this.held;
      this.held = null;
      for (const frame of held) this.onEvent(frame);
      if (this.socket?.readyState === WebSocket.OPEN) this.show("live", "Live");
    }
  }

  subscribe(topics) {
    const fresh = topics.filter((topic) => !this.topics.has(topic));
    if (!fresh.length) return;
    for (const topic of fresh) this.topics.add(topic);
    // Not open yet: the open handler (or the next connection) subscribes them.
    this.sendSubscribe(fresh);
  }

  // The server takes at most 100 topics per frame.
  sendSubscribe(topics) {
    for (let start = 0; start < topics.length; start += 100) {
      this.send({ type: "subscribe", topics: topics.slice(start, start + 100), message_id: "subscribe" });
    }
  }

  unsubscribe(topics) {
    const known = topics.filter((topic) => this.topics.delete(topic));
    if (known.length) this.send({ type: "unsubscribe", topics: known });
  }

  // True if the frame went out (the socket is open).
  send(frame) {
    if (this.socket?.readyState !== WebSocket.OPEN) return false;
    this.socket.send(JSON.stringify(frame));
    return true;
  }

  show(state, text) {
    this.status.dataset.state = state;
    this.status.textContent = text;
  }
}
