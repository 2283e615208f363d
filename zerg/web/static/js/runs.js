// Every run, newest first, filterable by agent and status, kept live.

import { api } from "./api.js";
import { $, badge, cell, duration, el, report, tokens, when } from "./dom.js";
import { Pager, all, debounced, livePage } from "./page.js";

const PAGE = 50;
const agents = new Map();
const runs = new Map();
const filters = $("run-filters");

const { live, start } = livePage({ topics: ["agents"], load, onEvent });
const pager = new Pager("runs", PAGE, loadRuns);

async function load() {
  const list = await all(api, "/api/agents");
  agents.clear();
  for (const agent of list) agents.set(agent.id, agent);
  // Runs are announced to their agent's watchers: watch every agent.
  live.subscribe(list.map((agent) => `agent:${agent.id}`));
  fillAgents();
  await loadRuns();
}

async function loadRuns() {
  const list = await pager.fetch(api, "/api/runs", filterValues());
  if (list === null) return;
  runs.clear();
  for (const run of list) runs.set(run.id, run);
  render();
}

function filterValues() {
  const fields = filters.elements;
  return { agent_id: fields.agent_id.value, status: fields.status.value, q: fields.q.value.trim() };
}

// The server's filters, applied to a run announced live (q: as GET /api/runs reads it).
function matches(run) {
  const { agent_id: agentId, status, q } = filterValues();
  const text = q.toLowerCase();
  const name = agents.get(run.agent_id)?.name || "";
  const found = !text || name.toLowerCase().includes(text) || (run.error || "").toLowerCase().includes(text);
  return (!agentId || run.agent_id === Number(agentId)) && (!status || run.status === status) && found;
}

function onEvent(frame) {
  const data = frame.data;
  switch (frame.type) {
    case "agent_created":
    case "agent_updated":
      agents.set(data.id, data);
      live.subscribe([`agent:${data.id}`]);
      fillAgents();
      render();
      break;
    case "agent_deleted":
      agents.delete(data.id);
      live.unsubscribe([`agent:${data.id}`]);
      for (const run of [...runs.values()]) if (run.agent_id === data.id) runs.delete(run.id);
      fillAgents();
      render();
      break;
    case "run_updated":
      // New runs are the newest: they belong on the first page only.
      if (!runs.has(data.id) && pager.skip > 0) break;
      if (matches(data)) runs.set(data.id, data);
      else runs.delete(data.id);
      render();
      break;
  }
}

function fillAgents() {
  const select = filters.elements.agent_id;
  const chosen = select.value;
  const options = [...agents.values()].map((agent) => el("option", { value: agent.id, text: agent.name }));
  select.replaceChildren(el("option", { value: "", text: "Any" }), ...options);
  select.value = agents.has(Number(chosen)) ? chosen : "";
}

function render() {
  const shown = [...runs.values()].sort((a, b) => b.id - a.id).slice(0, PAGE);
  $("runs").replaceChildren(...shown.map(runRow));
  $("runs-empty").hidden = shown.length > 0;
  $("runs-table").hidden = shown.length === 0;
}

function runRow(run) {
  const agent = agents.get(run.agent_id);
  return el(
    "tr",
    { dataset: { runId: run.id } },
    el("th", { scope: "row", "data-label": "Run" }, el("a", { href: `/runs/${run.id}`, text: `#${run.id}` })),
    cell("Agent", el("a", { href: `/agents/${run.agent_id}`, text: agent ? agent.name : `Agent ${run.agent_id}` })),
    cell("Status", badge(run.status)),
    cell("Trigger", run.trigger),
    cell("Started", when(run.started_at, "Not yet")),
    cell("Duration", duration(run.duration_ms)),
    cell("Tokens", tokens(run)),
    cell("Thread", run.thread_id ? el("a", { href: `/threads/${run.thread_id}`, text: `Thread ${run.thread_id}` }) : "—"),
    cell("Error", run.error ? el("span", { class: "error-text", text: run.error }) : "—"),
  );
}

const reload = () => {
  pager.reset();
  return loadRuns();
};
const searchSoon = debounced(reload);
filters.addEventListener("change", (event) => {
  if (event.target !== filters.elements.q) reload().catch(report);
});
filters.elements.q.addEventListener("input", searchSoon);
filters.addEventListener("submit", (event) => event.preventDefault());
start();
