// One run: its state, tokens and timings, its tool calls (approved or
// rejected here when they wait for a person) and the messages it wrote in
// its thread, all kept live through the thread's topic.

import { ApiError, api } from "./api.js";
import { $, badge, duration, el, report, tokens, when } from "./dom.js";
import { all, livePage } from "./page.js";
import { renderMarkdown } from "./markdown.js";
import { ToolCalls } from "./toolcalls.js";

const runId = Number(document.body.dataset.id);
const ACTIVE = new Set(["queued", "running", "awaiting_approval"]);
const ROLES = { assistant: "Agent", tool: "Tool result" };
const TOOL_FRAMES = new Set([
  "tool_call_started",
  "tool_call_arguments_delta",
  "tool_call_approval_required",
  "tool_call_completed",
  "tool_call_failed",
]);

const calls = new ToolCalls();
const written = new Map();
let run = null;

const { live, start } = livePage({ topics: [], load, onEvent });

async function load() {
  run = await api.get(`/api/runs/${runId}`);
  const [agent, thread, rows, history] = await Promise.all([
    api.get(`/api/agents/${run.agent_id}`),
    api.get(`/api/threads/${run.thread_id}`),
    api.get(`/api/runs/${runId}/tool-calls`),
    all(api, `/api/threads/${run.thread_id}/messages`),
  ]);
  live.subscribe([`thread:${run.thread_id}`]);
  $("agent-link").textContent = agent.name;
  $("agent-link").href = `/agents/${agent.id}`;
  $("thread-link").textContent = thread.title;
  $("thread-link").href = `/threads/${thread.id}`;
  renderRun();
  calls.clear();
  $("tool-calls").replaceChildren(...calls.fromRows(rows).map(({ card }) => card.node));
  showCallsEmpty();
  written.clear();
  for (const message of history) if (message.run_id === runId) written.set(message.id, message);
  renderMessages();
}

function onEvent(frame) {
  if (TOOL_FRAMES.has(frame.type)) {
    if (frame.run_id !== runId) return;
    const { card, made } = calls.frame(frame);
    if (made) $("tool-calls").append(card.node);
    showCallsEmpty();
    return;
  }
  switch (frame.type) {
    case "run_updated":
      if (frame.data.id !== runId) break;
      run = frame.data;
      renderRun();
      break;
    case "thread_message":
      if (frame.message.run_id !== runId) break;
      written.set(frame.message.id, frame.message);
      renderMessages();
      break;
  }
}

function renderRun() {
  document.title = `Run ${run.id} · zerg`;
  const facts = [
    ["Status", [badge(run.status), run.stop_requested ? ` (stop asked: ${run.stop_requested})` : ""]],
    ["Trigger", run.trigger],
    ["Created", when(run.created_at)],
    ["Started", when(run.started_at, "Not yet")],
    ["Finished", when(run.finished_at, ACTIVE.has(run.status) ? "Not yet" : "—")],
    ["Duration", duration(run.duration_ms)],
    ["Tokens", tokens(run)],
    ["Error", run.error ? el("span", { class: "error-text", text: run.error }) : "—"],
  ];
  $("run-facts").replaceChildren(...facts.flatMap(([term, value]) => [el("dt", { text: term }), el("dd", {}, value)]));
  $("cancel-run").hidden = !ACTIVE.has(run.status);
}

function showCallsEmpty() {
  $("tool-calls-empty").hidden = calls.cards.size > 0;
}

// What the run wrote, oldest first: replies as (sanitised) Markdown, the
// calls it asked for by name, and tool results as the tool gave them.
function renderMessages() {
  const sorted = [...written.values()].sort((a, b) => a.timestamp.localeCompare(b.timestamp) || a.id - b.id);
  $("run-messages").replaceChildren(...sorted.map(messageNode));
  $("run-messages-empty").hidden = written.size > 0;
}

function messageNode(message) {
  const content = el("div", { class: "content" });
  if (message.role === "assistant") {
    content.classList.add("markdown");
    content.append(renderMarkdown(message.content));
    const asked = (message.tool_calls || []).map((call) => call.function?.name).filter(Boolean);
    if (asked.length) content.append(el("p", { class: "muted", text: `Asked to call: ${asked.join(", ")}` }));
  } else {
    content.textContent = message.content;
  }
  const role = message.role === "tool" ? `${ROLES.tool}${message.name ? ` (${message.name})` : ""}` : ROLES[message.role] || message.role;
  return el(
    "li",
    { class: `msg msg-${message.role}`, dataset: { id: message.id, role: message.role } },
    el("p", { class: "meta" }, el("span", { class: "role", text: role }), " ", when(message.timestamp)),
    content,
  );
}

$("cancel-run").addEventListener("click", async () => {
  try {
    await api.post(`/api/runs/${runId}/cancel`);
  } catch (error) {
    if (!(error instanceof ApiError && error.status === 409)) report(error);
  }
});
start();
