// A thread as a chat: history, a composer, the reply streamed over the
// websocket, its tool calls as they happen (approved or rejected here when
// they wait for a person), and a cancel button while a run is active.

import { ApiError, api, newKey } from "./api.js";
import { $, clearFieldErrors, el, report, showFieldErrors, showNotice, when } from "./dom.js";
import { all, livePage } from "./page.js";
import { renderMarkdown } from "./markdown.js";
import { ToolCalls } from "./toolcalls.js";

const threadId = Number(document.body.dataset.id);
const ACTIVE = new Set(["queued", "running", "awaiting_approval"]);
// The newest runs whose tool-call rows a reload asks for (statuses, timings,
// approvals); older calls show what their messages say.
const RUNS_WITH_ROWS = 20;
const ROLES = { user: "You", assistant: "Agent", system: "System", tool: "Tool" };

const messages = new Map();
const calls = new ToolCalls();
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
  const active = recent.find((run) => ACTIVE.has(run.status)) || null;
  const rows = await toolCallRows(history, active);
  renderAll(rows);
  setActiveRun(active);
}

// The tool-call rows of the runs that called tools here, and of the active
// run, whose calls may not be stored as messages yet.
async function toolCallRows(history, active) {
  const ids = new Set(history.filter((m) => m.run_id && (m.role === "tool" || m.tool_calls?.length)).map((m) => m.run_id));
  if (active) ids.add(active.id);
  const newest = [...ids].sort((a, b) => b - a).slice(0, RUNS_WITH_ROWS).reverse();
  const lists = await Promise.all(newest.map((id) => api.get(`/api/runs/${id}/tool-calls`).catch(gone)));
  return lists.flat();
}

// A run deleted meanwhile has no rows: its calls show what their messages say.
function gone(error) {
  if (error instanceof ApiError && error.status === 404) return [];
  throw error;
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
    case "tool_call_started":
    case "tool_call_arguments_delta":
    case "tool_call_approval_required":
    case "tool_call_completed":
    case "tool_call_failed": {
      const { card, made } = calls.frame(frame);
      if (made) {
        $("messages").append(card.node);
        $("messages-empty").hidden = true;
      }
      stickToBottom();
      break;
    }
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

// Where a reply came from: a link to its run's page.
function runLink(runId) {
  return runId ? [" · ", el("a", { href: `/runs/${runId}`, text: `Run ${runId}` })] : [];
}

function messageNode(message) {
  const node = el(
    "li",
    { class: `msg msg-${message.role}`, dataset: { id: message.id, role: message.role, run: message.run_id } },
    el(
      "p",
      { class: "meta" },
      el("span", { class: "role", text: ROLES[message.role] || message.role }),
      " ",
      when(message.timestamp),
      ...runLink(message.run_id),
    ),
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

// A stored message as the chat shows it: a bubble, then the cards of the
// tool calls it asked for; a tool's result fills its call's card instead.
// Only the nodes not on the page yet are returned.
function messageNodes(message) {
  if (message.role === "tool") {
    const { card, made } = calls.fromToolMessage(message);
    return made ? [card.node] : [];
  }
  const asked = message.role === "assistant" ? calls.fromAssistant(message) : [];
  const bubble = message.content || !asked.length ? [messageNode(message)] : [];
  return [...bubble, ...asked.filter(({ made }) => made).map(({ card }) => card.node)];
}

function renderAll(rows = []) {
  calls.clear();
  const sorted = [...messages.values()].sort((a, b) => a.timestamp.localeCompare(b.timestamp) || a.id - b.id);
  const nodes = sorted.flatMap(messageNodes);
  // Calls not stored as messages yet (a round still running) follow them.
  for (const { card, made } of calls.fromRows(rows)) if (made) nodes.push(card.node);
  $("messages").replaceChildren(...nodes, ...[...streams.values()].map((s) => s.node));
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
  const first = [...streams.values()][0]?.node;
  if (stream) {
    // The streamed reply is now stored: the bubble becomes that message. Its
    // text stays what was streamed unless the page missed the stream's start.
    // A reply of tool calls alone is shown by their cards.
    const [runId] = [...streams.entries()].find(([, value]) => value === stream);
    streams.delete(runId);
    const cards = calls.fromAssistant(message).filter(({ made }) => made).map(({ card }) => card.node);
    stream.node.after(...cards);
    if (!message.content && message.tool_calls?.length) {
      stream.node.remove();
    } else {
      stream.node.dataset.id = message.id;
      stream.node.dataset.run = runId;
      settle(stream.node, " ", when(message.timestamp), ...runLink(message.run_id ?? runId));
      if (!stream.complete) showContent(stream.node, "assistant", message.content);
      if (message.partial) markPartial(stream.node, "the run was cancelled or interrupted");
    }
  } else {
    for (const node of messageNodes(message)) $("messages").insertBefore(node, first || null);
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
  if (frame.discarded) forgetRun(frame.run_id);
  // The run's last reply (one that called tools may have written several),
  // unless it is known to be whole (a reply before a call that was waiting).
  const stored = [...document.querySelectorAll(`#messages li.msg[data-run="${frame.run_id}"]`)].pop();
  const whole = messages.get(Number(stored?.dataset.id))?.partial === false;
  if (stored && !whole && (frame.status === "cancelled" || frame.status === "interrupted")) {
    markPartial(stored, `the run was ${frame.status}`);
  }
  if (frame.status === "failed") {
    $("run-state").textContent = `The run failed: ${frame.error || "unknown error"}`;
  }
}

// A rolled-back run's messages were removed: so are their bubbles and cards.
function forgetRun(runId) {
  for (const [id, message] of messages) if (message.run_id === runId) messages.delete(id);
  for (const node of document.querySelectorAll(`#messages li[data-run="${runId}"]`)) node.remove();
  calls.forgetRun(runId);
  $("messages-empty").hidden = $("messages").children.length > 0;
}

const RUN_STATES = {
  queued: "Reply queued…",
  running: "The agent is replying…",
  awaiting_approval: "A tool call waits for your approval.",
};

function setActiveRun(run, finished) {
  activeRun = run;
  $("cancel-run").hidden = run === null;
  const state = $("run-state");
  if (run) state.replaceChildren(RUN_STATES[run.status], ...runLink(run.id));
  else if (finished && finished.status !== "failed") {
    state.replaceChildren(el("a", { href: `/runs/${finished.id}`, text: `Run ${finished.id}` }), ` ended: ${finished.status}.`);
  } else if (!finished) state.textContent = "";
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
