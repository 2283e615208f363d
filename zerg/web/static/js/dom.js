import { ApiError, AuthRequired } from "./api.js";

// Small DOM and formatting helpers. Text always goes in through textContent:
// names and messages are user input and are never parsed as HTML.

export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "text") node.textContent = value;
    else if (name === "dataset") Object.assign(node.dataset, value);
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export const $ = (id) => document.getElementById(id);

const dateFormat = new Intl.DateTimeFormat(undefined, {
  year: "numeric",
  month: "short",
  day: "numeric",
  hour: "2-digit",
  minute: "2-digit",
  timeZoneName: "short",
});

// A timestamp in the browser's time zone, which it names ("CET", "GMT+5:30"),
// machine-readable in <time datetime>.
export function when(iso, empty = "—") {
  if (!iso) return document.createTextNode(empty);
  const date = new Date(iso);
  return el("time", { datetime: date.toISOString(), title: date.toString() }, dateFormat.format(date));
}

export function duration(ms) {
  if (ms === null || ms === undefined) return "—";
  if (ms < 1000) return `${ms} ms`;
  const seconds = ms / 1000;
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  return `${Math.floor(seconds / 60)} min ${Math.round(seconds % 60)} s`;
}

export function tokens(run) {
  if (run.total_tokens === null || run.total_tokens === undefined) return "—";
  return `${run.total_tokens} (${run.prompt_tokens ?? "?"} in, ${run.completion_tokens ?? "?"} out)`;
}

// A cron expression that wraps between its fields only (never after a "-").
export function cronCode(expression) {
  const fields = expression.split(" ").map((field) => el("span", { class: "nowrap", text: field }));
  return el("code", {}, ...fields.flatMap((field, index) => (index ? [" ", field] : [field])));
}

// A status as text in a badge: the word carries the meaning, the colour only helps.
export function badge(status) {
  return el("span", { class: `badge badge-${status}`, text: status });
}

// A table cell that says what it holds when the table is shown as cards (narrow screens).
export function cell(label, ...children) {
  return el("td", { "data-label": label }, ...children);
}

let noticeTimer = null;

// Errors stay until the next notice; confirmations fade after a while.
export function showNotice(text, kind = "error") {
  const notice = $("notice");
  notice.textContent = text;
  notice.dataset.kind = kind;
  notice.hidden = !text;
  clearTimeout(noticeTimer);
  if (kind === "ok") noticeTimer = setTimeout(() => { notice.hidden = true; }, 8000);
}

// Show an error that is not the token prompt's business.
export function report(error) {
  if (error instanceof AuthRequired) return;
  // The API's refusals are answers for the person, not faults of the page.
  if (error instanceof ApiError) console.warn(error);
  else console.error(error);
  showNotice(error?.message || String(error));
}

// Put 422 messages next to the fields they concern (ids "field-X", "error-X").
export function showFieldErrors(form, error) {
  clearFieldErrors(form);
  if (error instanceof AuthRequired) return;
  if (!error.fieldErrors) {
    report(error);
    return;
  }
  const { byField, other } = error.fieldErrors();
  if (!Object.keys(byField).length && !other.length) other.push(error.message);
  let first = null;
  for (const [field, messages] of Object.entries(byField)) {
    const slot = form.querySelector(`#error-${CSS.escape(field)}`);
    const input = form.querySelector(`[name="${CSS.escape(field)}"]`);
    if (!slot) {
      other.push(...messages.map((message) => `${field}: ${message}`));
      continue;
    }
    slot.textContent = messages.join(" ");
    input?.setAttribute("aria-invalid", "true");
    first ||= input;
  }
  const formError = form.querySelector(".form-error");
  if (formError) formError.textContent = other.length ? other.join(" ") : "";
  else if (other.length) showNotice(other.join(" "));
  first?.focus();
}

export function clearFieldErrors(form) {
  for (const slot of form.querySelectorAll(".error")) slot.textContent = "";
  for (const input of form.querySelectorAll("[aria-invalid]")) input.removeAttribute("aria-invalid");
}
