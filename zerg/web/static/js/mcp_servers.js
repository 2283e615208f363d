// MCP servers: a list, a form to add and edit them, and each server's tools
// (from the server's cache, or asked again). Header and environment values
// are write-only: the API returns only their names, the form takes new
// values in password fields and never fills them back in.

import { ApiError, api } from "./api.js";
import { $, cell, clearFieldErrors, el, report, showFieldErrors, showNotice, when } from "./dom.js";
import { all, livePage } from "./page.js";

const servers = new Map();
const form = $("server-form");
let editing = null;
// The server whose tools the panel shows, and the latest request for them.
let shown = null;
let toolsAsked = 0;

const { start } = livePage({ topics: [], load, onEvent: () => {} });

// Name/value rows for a map whose values are secrets (headers, env).
class SecretPairs {
  constructor(kind, label) {
    this.kind = kind;
    this.label = label;
    this.rows = $(`${kind}-rows`);
    this.stored = $(`${kind}-stored`);
    this.clearField = $(`${kind}-clear-field`);
    this.clear = $(`field-${kind}-clear`);
    this.count = 0;
    $(`${kind}-add`).addEventListener("click", () => this.add().querySelector("input").focus());
  }

  add() {
    const n = ++this.count;
    const row = el(
      "div",
      { class: "pair" },
      el("input", { name: this.kind, placeholder: "Name", "aria-label": `${this.label} ${n}: name`, autocomplete: "off", spellcheck: "false" }),
      el("input", { name: `${this.kind}-value`, type: "password", placeholder: "Value (secret)", "aria-label": `${this.label} ${n}: value`, autocomplete: "new-password" }),
      el("button", { type: "button", class: "secondary", "aria-label": `Remove ${this.label.toLowerCase()} ${n}`, onclick: () => row.remove() }, "Remove"),
    );
    this.rows.append(row);
    return row;
  }

  // Show which names are stored (an edit), or none (a new server).
  reset(names = null) {
    this.rows.replaceChildren();
    this.count = 0;
    this.clear.checked = false;
    const any = names && names.length > 0;
    this.stored.hidden = !any;
    this.clearField.hidden = !any;
    this.stored.textContent = any
      ? `Stored: ${names.join(", ")}. Their values are never shown; rows added here replace them all.`
      : "";
  }

  // The map to send, or undefined to leave the stored one as it is.
  value() {
    const map = {};
    for (const row of this.rows.querySelectorAll(".pair")) {
      const [name, secret] = row.querySelectorAll("input");
      if (name.value.trim()) map[name.value.trim()] = secret.value;
    }
    if (Object.keys(map).length) return map;
    if (this.clear.checked || editing === null) return {};
    return undefined;
  }
}

const headers = new SecretPairs("headers", "Header");
const env = new SecretPairs("env", "Variable");

async function load() {
  const list = await all(api, "/api/mcp-servers");
  servers.clear();
  for (const server of list) servers.set(server.id, server);
  renderAll();
}

function renderAll() {
  // Rows are rebuilt: the control that had the keyboard's focus gets it back.
  const active = document.activeElement;
  const focused = $("servers").contains(active) ? active.getAttribute("aria-label") || active.id : null;
  const sorted = [...servers.values()].sort((a, b) => a.id - b.id);
  $("servers").replaceChildren(...sorted.map(serverRow));
  if (focused) ($(focused) || $("servers").querySelector(`[aria-label="${CSS.escape(focused)}"]`))?.focus();
  $("servers-empty").hidden = servers.size > 0;
  $("servers-table").hidden = servers.size === 0;
}

function address(server) {
  if (server.transport === "stdio") return el("code", { text: [server.command, ...server.args].join(" ") });
  return el("code", { text: server.url || "" });
}

function secrets(server) {
  const names = [...server.header_names.map((name) => `header ${name}`), ...server.env_keys.map((name) => `env ${name}`)];
  return names.length ? names.join(", ") : "—";
}

function serverRow(server) {
  const toggleId = `enabled-${server.id}`;
  return el(
    "tr",
    { dataset: { serverId: server.id } },
    el("th", { scope: "row", "data-label": "Name" }, server.name),
    cell("Transport", server.transport === "stdio" ? "stdio" : "Streamable HTTP"),
    cell("Address", address(server)),
    cell("Secrets set", secrets(server)),
    cell("Tools listed", when(server.tools_listed_at, "Not yet")),
    cell(
      "Actions",
      el(
        "div",
        { class: "row-actions" },
        el(
          "span",
          { class: "switch" },
          el("input", { id: toggleId, type: "checkbox", checked: server.enabled, onchange: (event) => setEnabled(server, event.target) }),
          el("label", { for: toggleId }, "Enabled", el("span", { class: "visually-hidden", text: `: ${server.name}` })),
        ),
        el("button", { type: "button", "aria-label": `Tools: ${server.name}`, onclick: () => showTools(server, false) }, "Tools"),
        el("button", { type: "button", class: "secondary", "aria-label": `Edit: ${server.name}`, onclick: () => startEditing(server) }, "Edit"),
        el("button", { type: "button", class: "danger", "aria-label": `Delete: ${server.name}`, onclick: () => remove(server) }, "Delete"),
      ),
    ),
  );
}

async function setEnabled(server, box) {
  try {
    const saved = await api.patch(`/api/mcp-servers/${server.id}`, { enabled: box.checked });
    servers.set(saved.id, saved);
    renderAll();
  } catch (error) {
    box.checked = !box.checked;
    report(error);
  }
}

async function remove(server) {
  if (!confirm(`Delete the MCP server ${server.name}? Agents that list its tools keep the entries, but cannot call them.`)) return;
  try {
    await api.delete(`/api/mcp-servers/${server.id}`);
    servers.delete(server.id);
    renderAll();
    if (editing === server.id) stopEditing();
    if (shown === server.id) closeTools();
    showNotice(`Deleted ${server.name}.`, "ok");
  } catch (error) {
    report(error);
  }
}

// The server's tools: its cached list, or (refresh) the list it gives now.
// A server that fails or does not answer says so here (502, 504).
async function showTools(server, refresh) {
  shown = server.id;
  const asked = ++toolsAsked;
  $("tools-panel").hidden = false;
  $("tools-title").textContent = `Tools of ${server.name}`;
  $("tools-error").textContent = "";
  $("tools-state").textContent = refresh ? "Asking the server…" : "Loading…";
  $("tools-refresh").disabled = true;
  if (!refresh) {
    $("tools-list").replaceChildren();
    $("tools-title").focus();
  }
  try {
    const answer = await api.get(`/api/mcp-servers/${server.id}/tools`, { refresh: refresh ? "true" : undefined });
    if (asked !== toolsAsked) return;
    $("tools-list").replaceChildren(...answer.tools.map(toolItem));
    $("tools-state").replaceChildren(
      `${answer.tools.length} tool${answer.tools.length === 1 ? "" : "s"}, listed `,
      when(answer.tools_listed_at),
      ".",
    );
    const listed = servers.get(server.id);
    if (listed) {
      servers.set(server.id, { ...listed, tools_listed_at: answer.tools_listed_at });
      renderAll();
    }
  } catch (error) {
    if (asked !== toolsAsked) return;
    if (!(error instanceof ApiError)) {
      report(error);
      return;
    }
    $("tools-state").textContent = "";
    $("tools-error").textContent = `The server's tools could not be listed: ${error.message}`;
  } finally {
    if (asked === toolsAsked) $("tools-refresh").disabled = false;
  }
}

function toolItem(tool) {
  return el(
    "li",
    { dataset: { entry: tool.entry } },
    el("code", { text: tool.entry }),
    tool.description ? el("span", { class: "muted", text: ` · ${tool.description}` }) : null,
  );
}

function closeTools() {
  shown = null;
  toolsAsked += 1;
  $("tools-panel").hidden = true;
}

function showTransport() {
  const transport = form.elements.transport.value;
  for (const part of form.querySelectorAll("[data-transport]")) part.hidden = part.dataset.transport !== transport;
}

function startEditing(server) {
  editing = server.id;
  clearFieldErrors(form);
  $("form-title").textContent = `Edit ${server.name}`;
  $("form-submit").textContent = "Save changes";
  $("form-cancel").hidden = false;
  const fields = form.elements;
  fields.name.value = server.name;
  fields.transport.value = server.transport;
  fields.url.value = server.url || "";
  fields.command.value = server.command || "";
  fields.args.value = server.args.join("\n");
  fields.enabled.checked = server.enabled;
  headers.reset(server.header_names);
  env.reset(server.env_keys);
  showTransport();
  form.scrollIntoView({ block: "start" });
  fields.name.focus();
}

function stopEditing() {
  editing = null;
  form.reset();
  clearFieldErrors(form);
  headers.reset();
  env.reset();
  showTransport();
  $("form-title").textContent = "Add an MCP server";
  $("form-submit").textContent = "Add server";
  $("form-cancel").hidden = true;
}

// What the form says, for the transport chosen only (the server refuses the
// other's fields, and clears them when the transport changes); on an edit,
// secrets left blank are kept.
function formBody() {
  const fields = form.elements;
  const body = { name: fields.name.value.trim(), transport: fields.transport.value, enabled: fields.enabled.checked };
  if (body.transport === "stdio") {
    body.command = fields.command.value.trim();
    body.args = fields.args.value.split("\n").map((line) => line.trim()).filter(Boolean);
    body.env = env.value();
  } else {
    body.url = fields.url.value.trim();
    body.headers = headers.value();
  }
  for (const key of Object.keys(body)) if (body[key] === undefined) delete body[key];
  return body;
}

async function submit(event) {
  event.preventDefault();
  clearFieldErrors(form);
  const id = editing;
  try {
    const server = id === null
      ? await api.post("/api/mcp-servers", formBody())
      : await api.patch(`/api/mcp-servers/${id}`, formBody());
    servers.set(server.id, server);
    renderAll();
    stopEditing();
    showNotice(`${id === null ? "Added" : "Saved"} ${server.name}.`, "ok");
    const row = document.querySelector(`#servers tr[data-server-id="${server.id}"]`);
    row?.classList.add("fresh");
    row?.scrollIntoView({ block: "center" });
  } catch (error) {
    showFieldErrors(form, error);
  }
}

form.addEventListener("submit", submit);
form.elements.transport.addEventListener("change", showTransport);
$("form-cancel").addEventListener("click", stopEditing);
$("tools-refresh").addEventListener("click", () => {
  const server = servers.get(shown);
  if (server) showTools(server, true).catch(report);
});
$("tools-close").addEventListener("click", closeTools);
stopEditing();
start();
