// The agents dashboard: a live table, and a form to create and edit agents.

import { ApiError, api } from "./api.js";
import { $, badge, cell, clearFieldErrors, cronCode, el, report, showFieldErrors, showNotice, when } from "./dom.js";
import { Pager, debounced, livePage, replaceKeepingFocus } from "./page.js";
import { preview, scheduleWords } from "./schedule.js";
import { ToolPicker } from "./tool_picker.js";

const agents = new Map();
const rows = new Map();
const form = $("agent-form");
// New agents' schedules are read in the browser's zone unless changed; the
// aliases of UTC are shown as UTC.
const localZone = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
const browserZone = ["Etc/UTC", "Etc/GMT", "GMT", "Etc/Universal"].includes(localZone) ? "UTC" : localZone;
let editing = null;
let previewTimer = null;
let previewAsked = 0;

const { live, start } = livePage({ topics: ["agents"], load, onEvent });
const PAGE = 25;
const pager = new Pager("agents", PAGE, loadAgents);
const search = $("search-q");
const picker = new ToolPicker($("tool-groups"), $("tools-empty"));

async function load() {
  const [models, tools] = await Promise.all([api.get("/api/models"), api.get("/api/tools"), loadAgents()]);
  fillModels(models);
  picker.offer(tools);
  const wanted = Number(new URLSearchParams(location.search).get("edit"));
  if (wanted && editing === null) {
    // The agent to edit may be on another page of the list.
    const agent = agents.get(wanted) || (await api.get(`/api/agents/${wanted}`).catch(report));
    if (agent) startEditing(agent);
  }
}

// The page of agents the search and the pager point at.
async function loadAgents() {
  const q = search.value.trim();
  const list = await pager.fetch(api, "/api/agents", { q });
  if (list === null) return;
  agents.clear();
  for (const agent of list) agents.set(agent.id, agent);
  live.subscribe(list.map((agent) => `agent:${agent.id}`));
  renderAll();
}

// Whether a new agent belongs on the page shown: it matches the search, and
// the page is the last (agents are listed oldest first).
function belongsHere(agent) {
  const q = search.value.trim().toLowerCase();
  return !pager.more && (!q || agent.name.toLowerCase().includes(q));
}

function onEvent(frame) {
  const data = frame.data;
  switch (frame.type) {
    case "agent_created":
      if (!agents.has(data.id) && !belongsHere(data)) break;
      agents.set(data.id, data);
      live.subscribe([`agent:${data.id}`]);
      render(data.id);
      break;
    case "agent_updated":
      if (!agents.has(data.id)) break;
      agents.set(data.id, data);
      render(data.id);
      break;
    case "agent_deleted":
      agents.delete(data.id);
      live.unsubscribe([`agent:${data.id}`]);
      render(data.id);
      if (editing === data.id) stopEditing();
      break;
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
    const row = agentRow(agent);
    if (old) replaceKeepingFocus(old, row);
    else $("agents").append(row);
    rows.set(id, row);
  }
  showEmpty();
}

function showEmpty() {
  const searching = search.value.trim() !== "";
  $("agents-empty").hidden = agents.size > 0 || searching;
  $("agents-none-match").hidden = agents.size > 0 || !searching;
  $("agents-table").hidden = agents.size === 0;
}

function scheduleCell(agent) {
  if (!agent.schedule) return cell("Schedule", "—");
  let next = el("span", { class: "next muted", text: "Schedule off" });
  if (agent.run_on_schedule) {
    next = el("span", { class: "next" }, "Next run: ", when(agent.next_run_at));
  } else if (agent.consecutive_failures > 0) {
    // Turned off by the server after failed runs in a row; last_error says why.
    const failed = `${agent.consecutive_failures} failed run${agent.consecutive_failures === 1 ? "" : "s"}`;
    next = el("span", { class: "next error-text", text: `Paused after ${failed} in a row` });
  }
  return cell(
    "Schedule",
    scheduleWords(agent.schedule, agent.timezone),
    cronCode(agent.schedule),
    el("br"),
    next,
  );
}

// The switch for running on the schedule; none without a schedule to run on.
function scheduleSwitch(agent) {
  if (!agent.schedule) return null;
  const toggleId = `toggle-${agent.id}`;
  const toggle = el("input", {
    id: toggleId,
    type: "checkbox",
    checked: agent.run_on_schedule,
    dataset: { focus: "toggle" },
    onchange: (event) => setSchedule(agent, event.target),
  });
  return el(
    "span",
    { class: "switch" },
    toggle,
    el("label", { for: toggleId }, "On schedule", el("span", { class: "visually-hidden", text: `: ${agent.name}` })),
  );
}

function agentRow(agent) {
  return el(
    "tr",
    { dataset: { agentId: agent.id } },
    el("th", { scope: "row", "data-label": "Name" }, el("a", { href: `/agents/${agent.id}`, text: agent.name })),
    cell("Status", badge(agent.status)),
    cell("Model", agent.model),
    scheduleCell(agent),
    cell("Last run", agent.last_run_at ? [when(agent.last_run_at), " ", badge(agent.last_run_status)] : el("span", { class: "muted", text: "Never" })),
    cell("Last error", agent.last_error ? el("span", { class: "error-text", text: agent.last_error }) : "—"),
    cell(
      "Actions",
      el(
        "div",
        { class: "row-actions" },
        el("button", { type: "button", "aria-label": `Run now: ${agent.name}`, dataset: { focus: "run" }, onclick: () => runNow(agent) }, "Run now"),
        scheduleSwitch(agent),
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
    select.append(el("option", { value: model.id, text: modelLabel(model) }));
  }
  select.value = chosen;
}

// A model's name as GET /api/models gives it; a bare id also names its provider.
function modelLabel(model) {
  return model.display_name === model.id ? `${model.id} (${model.provider})` : model.display_name;
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
  form.elements.timezone.value = agent.timezone;
  form.elements.run_on_schedule.checked = agent.run_on_schedule;
  form.elements.temperature.value = agent.temperature ?? "";
  form.elements.max_tokens.value = agent.max_tokens ?? "";
  picker.set(agent.tools, agent.approval_required);
  describeSchedule();
  form.scrollIntoView({ block: "start" });
  form.elements.name.focus();
}

function stopEditing() {
  editing = null;
  form.reset();
  form.elements.timezone.value = browserZone;
  picker.set();
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
    timezone: fields.timezone.value.trim(),
    run_on_schedule: fields.run_on_schedule.checked,
    temperature: numberOrNull(fields.temperature),
    max_tokens: numberOrNull(fields.max_tokens),
    ...picker.value(),
  };
  if (fields.model.value) body.model = fields.model.value;
  return body;
}

// An empty number field means "not set"; the server judges the range.
function numberOrNull(input) {
  return input.value === "" ? null : Number(input.value);
}

// Text a number field cannot read ("0,7" in some keyboards' hands) is said
// at the field, rather than sent as "not set".
function unreadableNumbers() {
  const bad = ["temperature", "max_tokens"].filter((name) => form.elements[name].validity.badInput);
  for (const name of bad) {
    $(`error-${name}`).textContent = "Enter a number.";
    form.elements[name].setAttribute("aria-invalid", "true");
  }
  form.elements[bad[0]]?.focus();
  return bad.length > 0;
}

async function submit(event) {
  event.preventDefault();
  clearFieldErrors(form);
  if (unreadableNumbers()) return;
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
    // The form is below the table: show the row it made or changed, and
    // carry the keyboard's focus there too.
    const row = rows.get(agent.id);
    row.classList.add("fresh");
    row.scrollIntoView({ block: "center" });
    row.querySelector("a").focus({ preventScroll: true });
  } catch (error) {
    showFieldErrors(form, error);
  }
}

// What the schedule means and when it fires, from the server, a moment after
// typing stops. Until it answers nothing is shown: words beside an error, or
// for a text that has since changed, would mislead.
function describeSchedule() {
  const cron = form.elements.schedule.value.trim();
  const timezone = form.elements.timezone.value.trim() || "UTC";
  showPreview(null, {});
  clearTimeout(previewTimer);
  previewAsked += 1;
  if (cron) previewTimer = setTimeout(() => previewSchedule(cron, timezone, previewAsked), 300);
}

async function previewSchedule(cron, timezone, asked) {
  let answer = null;
  const errors = {};
  try {
    answer = await preview(cron, timezone, 3);
  } catch (error) {
    if (!(error instanceof ApiError && error.status === 422)) {
      report(error);
      return;
    }
    for (const { loc, msg } of error.problem.errors || []) {
      const field = loc?.[1] === "cron" ? "schedule" : loc?.[1];
      (errors[field] ||= []).push(msg);
    }
  }
  // Only the answer to the latest text counts.
  if (asked === previewAsked) showPreview(answer, errors);
}

// Show the server's answer: its words and next runs, or its errors at their fields.
function showPreview(answer, errors) {
  $("schedule-words").textContent = answer ? `${answer.description} (${answer.timezone})` : "";
  const next = $("schedule-next");
  next.replaceChildren();
  if (answer) {
    next.append("Next runs: ");
    answer.next_runs.forEach((iso, index) => next.append(index ? "; " : "", when(iso)));
  }
  for (const field of ["schedule", "timezone"]) {
    const input = form.elements[field];
    $(`error-${field}`).textContent = (errors[field] || []).join(" ");
    if (errors[field]) input.setAttribute("aria-invalid", "true");
    else input.removeAttribute("aria-invalid");
  }
}

function fillZones() {
  const zones = typeof Intl.supportedValuesOf === "function" ? Intl.supportedValuesOf("timeZone") : [];
  $("timezones").replaceChildren(...["UTC", ...zones].map((zone) => el("option", { value: zone })));
  form.elements.timezone.value = browserZone;
}

const searchSoon = debounced(() => {
  pager.reset();
  return loadAgents();
});
search.addEventListener("input", searchSoon);
$("agent-search").addEventListener("submit", (event) => event.preventDefault());
form.addEventListener("submit", submit);
$("form-cancel").addEventListener("click", stopEditing);
form.elements.schedule.addEventListener("input", describeSchedule);
form.elements.timezone.addEventListener("input", describeSchedule);
fillZones();
start();
