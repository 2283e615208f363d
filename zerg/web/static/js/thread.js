// A thread as a chat: history, a composer, the reply streamed over the
// websocket, and a cancel button while a run is active.

import { ApiError, api, newKey } from "./api.js";
import { $, clearFieldErrors, el, report, showFieldErrors, showNotice, when } from "./dom.js";
import { all, livePage } from "./page.js";
import { renderMarkdown } from "./markdown.js";

const threadId = Number(document.body.dataset.id);
const ACTIVE = new Set(["queued", "running"]);
const ROLES = { user: "You", assistant: "Agent", system: "System", tool: "Tool" };

const messages = new Map();
// run id → { node, text, complete }: replies being streamed. `complete` is
// false when the page joined mid-stream and so missed the first pieces.
const streams = new Map();
let activeRun = null;
let thread = null;
// A message sent over REST that got no answer yet: trying it again reuses its
// Idempotency-Key, so the server stores it once however many tries reach it.
let unsent = null;

const { live, start } = livePage({ topics: [`thread:${threadId}`], load, onEvent });

async function load() {
  thread = await api.get(`/api/threads/${threadId}`);
  const [agent, history, recent] = await Promise.all([
    api.get(`/api/agents/${thread.agent_id}`),
    all(api, `/api/threads/${threadId}/messages`),
    api.get("/api/runs", { thread_id: threadId, limit: 5 }),
  ]);
  showThread(thread);
  $("agent-link").textContent = agent.name;
  $("agent-link").href = `/agents/${agent.id}`;
  messages.clear();
  for (const message of history) messages.set(message.id, message);
  renderAll();
  setActiveRun(recent.find((run) => ACTIVE.has(run.status)) || null);
}

function onEvent(frame) {
  switch (frame.type) {
    case "thread_message":
      addMessage(frame.message);
      break;
    case "stream_start":
      streamFor(frame.run_id, true);
      break;
    case "stream_chunk": {
      const stream = streamFor(frame.run_id, false);
      stream.text += frame.content;
      // The whole text again: a piece can close a list or a code block.
      showContent(stream.node, "assistant", stream.text);
      stickToBottom();
      break;
    }
    case "stream_end":
      endStream(frame);
      break;
    case "run_updated":
      if (ACTIVE.has(frame.data.status)) setActiveRun(frame.data);
      else {
        // A run's end also comes as its stream_end; should that be lost on
        // the way, the run's final state still ends its bubble.
        if (streams.has(frame.data.id)) endStream({ run_id: frame.data.id, ...frame.data });
        if (activeRun?.id === frame.data.id) setActiveRun(null, frame.data);
      }
      break;
    case "thread_updated":
      thread = frame.data;
      showThread(thread);
      break;
    case "thread_deleted":
      showNotice("This thread was deleted.");
      for (const control of document.querySelectorAll("main button, main input, main textarea, main select")) {
        control.disabled = true;
      }
      break;
  }
}

function showThread(thread) {
  $("thread-title").textContent = thread.title;
  document.title = `${thread.title} · zerg`;
}

// A message's text: the agent's replies as (sanitised) Markdown, the rest as typed.
function showContent(node, role, text) {
  const content = node.querySelector(".content");
  if (role === "assistant") {
    content.classList.add("markdown");
    content.replaceChildren(renderMarkdown(text));
  } else {
    content.textContent = text;
  }
}

function messageNode(message) {
  const node = el(
    "li",
    { class: `msg msg-${message.role}`, dataset: { id: message.id, role: message.role } },
    el("p", { class: "meta" }, el("span", { class: "role", text: ROLES[message.role] || message.role }), " ", when(message.timestamp)),
    el("div", { class: "content" }),
  );
  showContent(node, message.role, message.content);
  if (message.partial) markPartial(node, "the run was cancelled or interrupted");
  return node;
}

function markPartial(node, why) {
  node.classList.add("partial");
  node.dataset.partial = "true";
  let label = node.querySelector(".partial-label");
  if (!label) {
    label = el("p", { class: "partial-label" });
    node.append(label);
  }
  label.textContent = `Partial reply: ${why}.`;
}

function renderAll() {
  const sorted = [...messages.values()].sort((a, b) => a.timestamp.localeCompare(b.timestamp) || a.id - b.id);
  $("messages").replaceChildren(...sorted.map(messageNode), ...[...streams.values()].map((s) => s.node));
  $("messages-empty").hidden = messages.size + streams.size > 0;
  stickToBottom(true);
}

function addMessage(message) {
  const stream = message.role === "assistant" ? streams.values().next().value : undefined;
  if (messages.has(message.id)) {
    // A reload already showed the stored reply: its bubble is a duplicate.
    if (stream) {
      streams.delete([...streams.keys()][0]);
      stream.node.remove();
    }
    return;
  }
  messages.set(message.id, message);
  if (stream) {
    // The streamed reply is now stored: the bubble becomes that message. Its
    // text stays what was streamed unless the page missed the stream's start.
    const [runId] = [...streams.entries()].find(([, value]) => value === stream);
    streams.delete(runId);
    stream.node.dataset.id = message.id;
    stream.node.dataset.run = runId;
    settle(stream.node, " ", when(message.timestamp));
    if (!stream.complete) showContent(stream.node, "assistant", message.content);
    if (message.partial) markPartial(stream.node, "the run was cancelled or interrupted");
  } else {
    const node = messageNode(message);
    const first = [...streams.values()][0]?.node;
    $("messages").insertBefore(node, first || null);
  }
  $("messages-empty").hidden = true;
  stickToBottom();
}

function streamFor(runId, fromStart) {
  let stream = streams.get(runId);
  if (!stream) {
    const node = el(
      "li",
      { class: "msg msg-assistant streaming", dataset: { role: "assistant", streaming: "true", run: runId } },
      el("p", { class: "meta" }, el("span", { class: "role", text: ROLES.assistant }), " ", el("span", { class: "muted", text: "replying…" })),
      el("div", { class: "content" }),
    );
    stream = { node, text: "", complete: fromStart };
    streams.set(runId, stream);
    $("messages").append(node);
    $("messages-empty").hidden = true;
    stickToBottom();
  }
  return stream;
}

// A bubble whose stream is over stops saying "replying…".
function settle(node, ...meta) {
  node.classList.remove("streaming");
  delete node.dataset.streaming;
  node.querySelector(".meta").replaceChildren(el("span", { class: "role", text: ROLES.assistant }), ...meta);
}

function endStream(frame) {
  const stream = streams.get(frame.run_id);
  if (stream) {
    // No stored message came: nothing was kept (a failure, a rollback, or a
    // cancel before any text). A rolled-back reply was removed: so is its bubble.
    streams.delete(frame.run_id);
    const why = frame.status === "failed" ? "the run failed, so it was not kept" : `the run ended ${frame.status}`;
    if (stream.text && !frame.discarded) {
      settle(stream.node);
      markPartial(stream.node, why);
    } else stream.node.remove();
  }
  const stored = document.querySelector(`#messages [data-run="${frame.run_id}"]`);
  if (stored && (frame.status === "cancelled" || frame.status === "interrupted")) {
    markPartial(stored, `the run was ${frame.status}`);
  }
  if (frame.status === "failed") {
    $("run-state").textContent = `The run failed: ${frame.error || "unknown error"}`;
  }
}

function setActiveRun(run, finished) {
  activeRun = run;
  $("cancel-run").hidden = run === null;
  if (run) $("run-state").textContent = run.status === "queued" ? "Reply queued…" : "The agent is replying…";
  else if (finished && finished.status !== "failed") $("run-state").textContent = `Run ${finished.id} ended: ${finished.status}.`;
  else if (!finished) $("run-state").textContent = "";
}

function stickToBottom(force = false) {
  const nearBottom = window.innerHeight + window.scrollY >= document.body.scrollHeight - 200;
  if (force || nearBottom) window.scrollTo(0, document.body.scrollHeight);
}

async function send(event) {
  event.preventDefault();
  const form = $("composer");
  clearFieldErrors(form);
  const content = form.elements.content.value;
  if (!content.trim()) {
    $("error-compose").textContent = "Write a message first.";
    form.elements.content.setAttribute("aria-invalid", "true");
    return;
  }
  const strategy = form.elements.multitask_strategy.value;
  form.elements.content.value = "";
  if (live.send({ type: "send_message", thread_id: threadId, content, multitask_strategy: strategy })) return;
  // Offline: the same thing through REST, one request that stores both or neither.
  if (unsent?.content !== content || unsent.strategy !== strategy) unsent = { content, strategy, key: newKey() };
  try {
    const body = { content, run: { multitask_strategy: strategy } };
    const { run, ...message } = await api.post(`/api/threads/${threadId}/messages`, body, {
      "Idempotency-Key": unsent.key,
    });
    unsent = null;
    addMessage(message);
    if (run) setActiveRun(run);
  } catch (error) {
    form.elements.content.value = content;
    report(error);
  }
}

async function cancel() {
  if (!activeRun) return;
  try {
    await api.post(`/api/runs/${activeRun.id}/cancel`);
  } catch (error) {
    if (!(error instanceof ApiError && error.status === 409)) report(error);
  }
}

function toggleRename(open) {
  const form = $("rename-form");
  form.hidden = !open;
  $("rename-thread").setAttribute("aria-expanded", String(open));
  clearFieldErrors(form);
  if (open) {
    form.elements.title.value = thread?.title || "";
    form.elements.title.select();
  } else {
    $("rename-thread").focus();
  }
}

async function rename(event) {
  event.preventDefault();
  const form = $("rename-form");
  clearFieldErrors(form);
  try {
    thread = await api.patch(`/api/threads/${threadId}`, { title: form.elements.title.value });
    showThread(thread);
    toggleRename(false);
    showNotice(`Renamed to ${thread.title}.`, "ok");
  } catch (error) {
    showFieldErrors(form, error);
  }
}

async function remove() {
  if (!confirm(`Delete ${thread?.title || "this thread"}, with its messages and runs?`)) return;
  try {
    await api.delete(`/api/threads/${threadId}`);
    location.href = thread ? `/agents/${thread.agent_id}` : "/";
  } catch (error) {
    report(error);
  }
}

$("rename-thread").addEventListener("click", () => toggleRename($("rename-form").hidden));
$("rename-cancel").addEventListener("click", () => toggleRename(false));
$("rename-form").addEventListener("submit", rename);
$("delete-thread").addEventListener("click", remove);
$("composer").addEventListener("submit", send);
$("compose").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    $("composer").requestSubmit();
  }
});
$("cancel-run").addEventListener("click", cancel);
start();
