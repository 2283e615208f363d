// The agents dashboard: a live table, and a form to create and edit agents.

import { api } from "./api.js";
import { describeCron } from "./cron.js";
import { $, badge, cell, clearFieldErrors, cronCode, el, report, showFieldErrors, showNotice, when } from "./dom.js";
import { all, livePage, replaceKeepingFocus } from "./page.js";

const agents = new Map();
const lastRuns = new Map();
const rows = new Map();
const form = $("agent-form");
let editing = null;

const { live, start } = livePage({ topics: ["agents"], load, onEvent });

async function load() {
  const [list, models] = await Promise.all([all(api, "/api/agents"), api.get("/api/models")]);
  fillModels(models);
  const runs = await Promise.all(
    list.map((agent) => api.get("/api/runs", { agent_id: agent.id, limit: 1 })),
  );
  agents.clear();
  lastRuns.clear();
  list.forEach((agent, index) => {
    agents.set(agent.id, agent);
    if (runs[index].length) lastRuns.set(agent.id, runs[index][0]);
  });
  live.subscribe(list.map((agent) => `agent:${agent.id}`));
  renderAll();
  const wanted = Number(new URLSearchParams(location.search).get("edit"));
  if (wanted && agents.has(wanted) && editing === null) startEditing(agents.get(wanted));
}

function onEvent(frame) {
  const data = frame.data;
  switch (frame.type) {
    case "agent_created":
    case "agent_updated":
      agents.set(data.id, data);
      live.subscribe([`agent:${data.id}`]);
      render(data.id);
      break;
    case "agent_deleted":
      agents.delete(data.id);
      lastRuns.delete(data.id);
      live.unsubscribe([`agent:${data.id}`]);
      render(data.id);
      if (editing === data.id) stopEditing();
      break;
    case "run_updated": {
      const known = lastRuns.get(data.agent_id);
      if (!known || data.id >= known.id) {
        lastRuns.set(data.agent_id, data);
        render(data.agent_id);
      }
      break;
    }
  }
}

function renderAll() {
  for (const row of rows.values()) row.remove();
  rows.clear();
  for (const id of agents.keys()) render(id);
  showEmpty();
}

// (Re)draw one agent's row, or remove it if the agent is gone.
function render(id) {
  const agent = agents.get(id);
  const old = rows.get(id);
  if (!agent) {
    old?.remove();
    rows.delete(id);
  } else {
    const row = agentRow(agent, lastRuns.get(id));
    if (old) replaceKeepingFocus(old, row);
    else $("agents").append(row);
    rows.set(id, row);
  }
  showEmpty();
}

function showEmpty() {
  $("agents-empty").hidden = agents.size > 0;
  $("agents-table").hidden = agents.size === 0;
}

function scheduleCell(agent) {
  if (!agent.schedule) return cell("Schedule", el("span", { class: "muted", text: "None" }));
  const next = agent.run_on_schedule
    ? el("span", { class: "next" }, "Next run: ", when(agent.next_run_at))
    : el("span", { class: "next muted", text: "Schedule off" });
  const words = describeCron(agent.schedule);
  return cell(
    "Schedule",
    words ? el("span", { text: `${words} ` }) : null,
    cronCode(agent.schedule),
    el("br"),
    next,
  );
}

function agentRow(agent, run) {
  const toggleId = `toggle-${agent.id}`;
  const toggle = el("input", {
    id: toggleId,
    type: "checkbox",
    checked: agent.run_on_schedule,
    disabled: !agent.schedule,
    dataset: { focus: "toggle" },
    onchange: (event) => setSchedule(agent, event.target),
  });
  return el(
    "tr",
    { dataset: { agentId: agent.id } },
    el("th", { scope: "row", "data-label": "Name" }, el("a", { href: `/agents/${agent.id}`, text: agent.name })),
    cell("Status", badge(agent.status)),
    cell("Model", agent.model),
    scheduleCell(agent),
    cell("Last run", run ? [when(run.started_at || run.created_at), " ", badge(run.status)] : el("span", { class: "muted", text: "Never" })),
    cell("Last error", agent.last_error ? el("span", { class: "error-text", text: agent.last_error }) : "—"),
    cell(
      "Actions",
      el(
        "div",
        { class: "row-actions" },
        el("button", { type: "button", "aria-label": `Run now: ${agent.name}`, dataset: { focus: "run" }, onclick: () => runNow(agent) }, "Run now"),
        el(
          "span",
          { class: "switch" },
          toggle,
          el("label", { for: toggleId }, "On schedule", el("span", { class: "visually-hidden", text: `: ${agent.name}` })),
        ),
        el("button", { type: "button", class: "secondary", "aria-label": `Edit: ${agent.name}`, dataset: { focus: "edit" }, onclick: () => startEditing(agent) }, "Edit"),
        el("button", { type: "button", class: "danger", "aria-label": `Delete: ${agent.name}`, dataset: { focus: "delete" }, onclick: () => remove(agent) }, "Delete"),
      ),
    ),
  );
}

async function runNow(agent) {
  try {
    const run = await api.post(`/api/agents/${agent.id}/run`);
    showNotice(`Run ${run.id} of ${agent.name} started.`, "ok");
  } catch (error) {
    report(error);
  }
}

async function setSchedule(agent, box) {
  try {
    await api.patch(`/api/agents/${agent.id}`, { run_on_schedule: box.checked });
  } catch (error) {
    box.checked = !box.checked;
    report(error);
  }
}

async function remove(agent) {
  if (!confirm(`Delete ${agent.name}, with its threads, messages and runs?`)) return;
  try {
    await api.delete(`/api/agents/${agent.id}`);
    agents.delete(agent.id);
    render(agent.id);
    showNotice(`Deleted ${agent.name}.`, "ok");
  } catch (error) {
    report(error);
  }
}

function fillModels(models) {
  const select = $("field-model");
  const chosen = select.value;
  for (const option of [...select.options].slice(1)) option.remove();
  for (const model of models) {
    select.append(el("option", { value: model.id, text: `${model.display_name} (${model.provider})` }));
  }
  select.value = chosen;
}

function startEditing(agent) {
  editing = agent.id;
  clearFieldErrors(form);
  $("form-title").textContent = `Edit ${agent.name}`;
  $("form-submit").textContent = "Save changes";
  $("form-cancel").hidden = false;
  form.elements.name.value = agent.name;
  const select = form.elements.model;
  if (![...select.options].some((option) => option.value === agent.model)) {
    select.append(el("option", { value: agent.model, text: agent.model }));
  }
  select.value = agent.model;
  form.elements.system_instructions.value = agent.system_instructions;
  form.elements.task_instructions.value = agent.task_instructions;
  form.elements.schedule.value = agent.schedule || "";
  form.elements.run_on_schedule.checked = agent.run_on_schedule;
  describeSchedule();
  form.scrollIntoView({ block: "start" });
  form.elements.name.focus();
}

function stopEditing() {
  editing = null;
  form.reset();
  clearFieldErrors(form);
  describeSchedule();
  $("form-title").textContent = "Create an agent";
  $("form-submit").textContent = "Create agent";
  $("form-cancel").hidden = true;
}

function formBody() {
  const fields = form.elements;
  const body = {
    name: fields.name.value,
    system_instructions: fields.system_instructions.value,
    task_instructions: fields.task_instructions.value,
    schedule: fields.schedule.value.trim() || null,
    run_on_schedule: fields.run_on_schedule.checked,
  };
  if (fields.model.value) body.model = fields.model.value;
  return body;
}

async function submit(event) {
  event.preventDefault();
  clearFieldErrors(form);
  const id = editing;
  try {
    const agent = id === null
      ? await api.post("/api/agents", formBody())
      : await api.patch(`/api/agents/${id}`, formBody());
    agents.set(agent.id, agent);
    live.subscribe([`agent:${agent.id}`]);
    render(agent.id);
    stopEditing();
    showNotice(`${id === null ? "Created" : "Saved"} ${agent.name}.`, "ok");
  } catch (error) {
    showFieldErrors(form, error);
  }
}

function describeSchedule() {
  const value = form.elements.schedule.value.trim();
  $("schedule-words").textContent = value ? describeCron(value) : "";
}

form.addEventListener("submit", submit);
$("form-cancel").addEventListener("click", stopEditing);
form.elements.schedule.addEventListener("input", describeSchedule);
start();
