// One agent: its facts, threads, agent messages and runs, kept live.

import { api } from "./api.js";
import { $, badge, cell, clearFieldErrors, cronCode, duration, el, report, showFieldErrors, showNotice, tokens, when } from "./dom.js";
import { all, livePage } from "./page.js";
import { scheduleWords } from "./schedule.js";

const agentId = Number(document.body.dataset.id);
const threads = new Map();
const runs = new Map();
let agent = null;

const { start } = livePage({ topics: [`agent:${agentId}`], load, onEvent });

async function load() {
  const [loaded, threadList, messages] = await Promise.all([
    api.get(`/api/agents/${agentId}`),
    all(api, "/api/threads", { agent_id: agentId }),
    all(api, `/api/agents/${agentId}/messages`),
  ]);
  agent = loaded;
  threads.clear();
  for (const thread of threadList) threads.set(thread.id, thread);
  renderAgent();
  renderThreads();
  renderMessages(messages);
  await loadRuns();
}

async function loadRuns() {
  const list = await api.get("/api/runs", { agent_id: agentId, status: $("filter-status").value, limit: 100 });
  runs.clear();
  for (const run of list) runs.set(run.id, run);
  renderRuns();
}

function onEvent(frame) {
  const data = frame.data;
  switch (frame.type) {
    case "agent_updated":
      agent = data;
      renderAgent();
      break;
    case "agent_deleted":
      showNotice(`${data.name} was deleted.`);
      for (const control of document.querySelectorAll("main button, main input, main select, main textarea")) {
        control.disabled = true;
      }
      break;
    case "thread_created":
    case "thread_updated":
      threads.set(data.id, data);
      renderThreads();
      break;
    case "thread_deleted":
      threads.delete(data.id);
      renderThreads();
      break;
    case "run_updated":
      if (matches(data, $("filter-status").value, "")) runs.set(data.id, data);
      else runs.delete(data.id);
      renderRuns();
      break;
  }
}

function matches(run, status, trigger) {
  return (!status || run.status === status) && (!trigger || run.trigger === trigger);
}

function renderAgent() {
  document.title = `${agent.name} · zerg`;
  $("agent-name").textContent = agent.name;
  const facts = [
    ["Status", badge(agent.status)],
    ["Model", agent.model],
    ["Schedule", agent.schedule ? [scheduleWords(agent.schedule, agent.timezone), cronCode(agent.schedule)] : "—"],
    ["Time zone", agent.timezone],
    ["Next run", nextRun()],
    ["Last run", agent.last_run_at ? [when(agent.last_run_at), " ", badge(agent.last_run_status)] : "Never"],
    ["Last error", agent.last_error || "—"],
    ["Tools", toolList()],
    ["Temperature", agent.temperature ?? "The model's default"],
    ["Most tokens per reply", agent.max_tokens ?? "No limit"],
  ];
  $("agent-facts").replaceChildren(
    ...facts.flatMap(([term, value]) => [el("dt", { text: term }), el("dd", {}, value)]),
  );
}

// The agent's tools, each saying whether its calls wait for a person's yes.
function toolList() {
  const tools = agent.tools || [];
  if (!tools.length) return "None";
  const asking = new Set(agent.approval_required || []);
  return el(
    "ul",
    { class: "plain" },
    tools.map((entry) => el("li", {}, el("code", { text: entry }), asking.has(entry) ? " (asks before each call)" : "")),
  );
}

function nextRun() {
  if (agent.schedule && agent.run_on_schedule) return when(agent.next_run_at);
  if (agent.schedule && agent.consecutive_failures > 0) {
    return el("span", { class: "error-text", text: `Paused after ${agent.consecutive_failures} failed runs in a row` });
  }
  return "Not scheduled";
}

function renderThreads() {
  const sorted = [...threads.values()].sort((a, b) => b.updated_at.localeCompare(a.updated_at) || b.id - a.id);
  $("threads").replaceChildren(
    ...sorted.map((thread) =>
      el(
        "li",
        { dataset: { threadId: thread.id } },
        el("a", { href: `/threads/${thread.id}`, text: thread.title }),
        el("span", { class: "muted" }, " · ", thread.thread_type, " · updated ", when(thread.updated_at)),
      ),
    ),
  );
  $("threads-empty").hidden = threads.size > 0;
}

function renderMessages(messages) {
  $("agent-messages").replaceChildren(
    ...messages.map((message) =>
      el(
        "li",
        { class: "agent-message" },
        el("span", { class: "role", text: message.role }),
        " ",
        when(message.timestamp),
        el("p", { class: "content", text: message.content }),
      ),
    ),
  );
  $("agent-messages-empty").hidden = messages.length > 0;
}

function renderRuns() {
  const trigger = $("filter-trigger").value;
  const shown = [...runs.values()].filter((run) => matches(run, "", trigger)).sort((a, b) => b.id - a.id);
  $("runs").replaceChildren(
    ...shown.map((run) =>
      el(
        "tr",
        { dataset: { runId: run.id } },
        el("th", { scope: "row", "data-label": "Run" }, el("a", { href: `/runs/${run.id}`, text: `#${run.id}` })),
        cell("Status", badge(run.status), run.error ? el("span", { class: "error-text", text: ` ${run.error}` }) : null),
        cell("Trigger", run.trigger),
        cell("Started", when(run.started_at, "Not yet")),
        cell("Duration", duration(run.duration_ms)),
        cell("Tokens", tokens(run)),
        cell("Thread", run.thread_id ? el("a", { href: `/threads/${run.thread_id}`, text: `Thread ${run.thread_id}` }) : "—"),
      ),
    ),
  );
  $("runs-empty").hidden = shown.length > 0;
  $("runs-table").hidden = shown.length === 0;
}

$("run-now").addEventListener("click", async () => {
  try {
    const run = await api.post(`/api/agents/${agentId}/run`);
    showNotice(`Run ${run.id} started.`, "ok");
  } catch (error) {
    report(error);
  }
});

$("thread-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target;
  clearFieldErrors(form);
  const title = form.elements.title.value.trim();
  try {
    const thread = await api.post("/api/threads", { agent_id: agentId, ...(title ? { title } : {}) });
    location.href = `/threads/${thread.id}`;
  } catch (error) {
    showFieldErrors(form, error);
  }
});

$("agent-message-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target;
  clearFieldErrors(form);
  try {
    await api.post(`/api/agents/${agentId}/messages`, {
      role: form.elements.role.value,
      content: form.elements.content.value,
    });
    form.elements.content.value = "";
    renderMessages(await all(api, `/api/agents/${agentId}/messages`));
  } catch (error) {
    showFieldErrors(form, error);
  }
});

$("filter-status").addEventListener("change", () => loadRuns().catch(report));
$("filter-trigger").addEventListener("change", renderRuns);
start();
