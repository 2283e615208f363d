// Tool calls as the chat and a run's page show them: one card per call, kept
// up to date from whatever says something about it (the websocket's
// tool_call_* frames, the stored assistant and tool messages, the run's
// tool-call rows), with approve and reject controls while it waits for a
// person. Arguments and results are the model's and the tool's text: they go
// in through textContent like any other user input.

import { ApiError, api, newKey } from "./api.js";
import { badge, duration, el, report, when } from "./dom.js";

const FAILED = new Set(["error", "timeout", "rejected", "cancelled"]);
// A call known only from the thread's messages: it has a result, but which
// status it ended with only the run's rows say.
const ANSWERED = "done";
// Once a call has one of these, nothing later may move it back.
const FINAL = new Set([...FAILED, "success", ANSWERED]);

// A call's arguments as the model wrote them, indented when they are whole JSON.
function pretty(text) {
  try {
    return JSON.stringify(JSON.parse(text), null, 2);
  } catch {
    return text;
  }
}

export class ToolCallCard {
  // `open`: shown unfolded (a call happening now) rather than folded (history).
  constructor(call, { open = false } = {}) {
    this.call = { status: "pending", arguments: "", ...call };
    this.key = null;
    this.summary = el("summary");
    this.body = el("div", { class: "tool-call-body" });
    this.details = el("details", { open }, this.summary, this.body);
    this.approval = el("div", { class: "approval" });
    this.node = el("li", { class: "tool-call" }, this.details, this.approval);
    this.render();
  }

  // Merge what a frame, a message or a row says. A final status stays
  // final, and a known outcome is not blurred into "done" by a message.
  update(fields) {
    const known = Object.fromEntries(Object.entries(fields).filter(([, value]) => value !== undefined));
    const ended = FINAL.has(this.call.status);
    if (ended && known.status && (!FINAL.has(known.status) || known.status === ANSWERED)) delete known.status;
    Object.assign(this.call, known);
    this.render();
  }

  appendArguments(delta) {
    this.call.arguments += delta;
    this.renderBody();
  }

  render() {
    const call = this.call;
    this.node.dataset.status = call.status;
    this.node.dataset.toolCallId = call.tool_call_id;
    if (call.run_id) this.node.dataset.run = call.run_id;
    if (call.id) this.node.dataset.id = call.id;
    const timed = call.duration_ms !== null && call.duration_ms !== undefined;
    this.summary.replaceChildren(
      el("span", { class: "tool-label", text: "Tool call " }),
      el("code", { class: "tool-name", text: call.name || call.function || "tool" }),
      " ",
      badge(call.status),
      ...(timed ? [el("span", { class: "muted tool-duration", text: ` ${duration(call.duration_ms)}` })] : []),
    );
    this.renderBody();
    this.renderApproval();
  }

  renderBody() {
    const call = this.call;
    const parts = [
      el("p", { class: "tool-part", text: "Arguments" }),
      el("pre", { class: "tool-arguments" }, el("code", { text: pretty(call.arguments) || "{}" })),
    ];
    if (call.result !== null && call.result !== undefined) {
      parts.push(
        el("p", { class: "tool-part", text: "Result" }),
        el("pre", { class: "tool-result" }, el("code", { text: call.result })),
      );
      if (call.truncated) parts.push(el("p", { class: "hint", text: "The result was cut to the server's limit." }));
    }
    if (call.error) {
      parts.push(el("p", { class: "tool-part", text: "Error" }), el("p", { class: "tool-error error-text", text: call.error }));
    }
    if (call.decided_at || call.decided_by) {
      const verdict = call.status === "rejected" ? "Rejected" : "Approved";
      parts.push(
        el(
          "p",
          { class: "tool-decision" },
          `${verdict}${call.decided_by ? ` by ${call.decided_by}` : ""} `,
          call.decided_at ? when(call.decided_at) : null,
          call.decision_reason ? `: ${call.decision_reason}` : null,
        ),
      );
    }
    if (call.started_at) {
      parts.push(el("p", { class: "muted tool-timing" }, "Started ", when(call.started_at), ", finished ", when(call.finished_at, "not yet")));
    } else if (call.finished_at) {
      parts.push(el("p", { class: "muted tool-timing" }, "Never ran; ended ", when(call.finished_at)));
    }
    if (call.run_id && document.body.dataset.page !== "run") {
      parts.push(el("p", { class: "tool-run" }, el("a", { href: `/runs/${call.run_id}`, text: `Run ${call.run_id}` })));
    }
    this.body.replaceChildren(...parts);
  }

  // The approve / reject controls, built once while the call waits and kept
  // (with the reason typed so far) until it does not.
  renderApproval() {
    const waiting = this.call.status === "awaiting_approval";
    this.node.classList.toggle("waiting", waiting);
    if (!waiting) {
      this.approval.replaceChildren();
      this.form = null;
      return;
    }
    if (this.form) {
      this.deadline.replaceChildren(...this.deadlineText());
      return;
    }
    const base = `approve-${this.call.run_id}-${this.call.tool_call_id}`.replace(/[^\w-]/g, "_");
    // The question names the call, so that each button says which call it decides.
    this.deadline = el("p", { id: `${base}-question`, class: "approval-question" }, ...this.deadlineText());
    this.message = el("p", { class: "error", role: "alert" });
    this.form = el(
      "form",
      { class: "approval-form", onsubmit: (event) => event.preventDefault() },
      this.deadline,
      el(
        "div",
        { class: "field" },
        el("label", { for: `${base}-reason`, text: "Reason (optional)" }),
        el("input", { id: `${base}-reason`, name: "reason", maxlength: "2000", autocomplete: "off" }),
      ),
      el(
        "div",
        { class: "actions" },
        el("button", { type: "button", "aria-describedby": `${base}-question`, dataset: { decision: "approve" }, onclick: () => this.decide("approve") }, "Approve"),
        el("button", { type: "button", class: "danger", "aria-describedby": `${base}-question`, dataset: { decision: "reject" }, onclick: () => this.decide("reject") }, "Reject"),
      ),
      this.message,
    );
    this.approval.replaceChildren(this.form);
  }

  deadlineText() {
    const name = this.call.name || this.call.function;
    const deadline = this.call.approval_deadline;
    return [`${name} waits for your approval`, deadline ? [" until ", when(deadline)] : null, "."].flat().filter(Boolean);
  }

  // Send a decision. One Idempotency-Key per decision and reason: a retry
  // after a lost answer is taken once, however many tries reach the server.
  async decide(decision) {
    const call = this.call;
    if (!call.id || !call.run_id) return;
    const reason = this.form.elements.reason.value.trim();
    const asked = `${decision}\n${reason}`;
    if (this.asked?.text !== asked) this.asked = { text: asked, key: newKey() };
    const buttons = [...this.form.querySelectorAll("button")];
    for (const button of buttons) button.disabled = true;
    this.message.textContent = "";
    try {
      const row = await api.post(
        `/api/runs/${call.run_id}/tool-calls/${call.id}/${decision}`,
        // decided_by says where the decision came from; the UI knows no names.
        { by: "web UI", ...(reason ? { reason } : {}) },
        { "Idempotency-Key": this.asked.key },
      );
      this.update(row);
    } catch (error) {
      if (error instanceof ApiError) this.message.textContent = error.message;
      else report(error);
    } finally {
      for (const button of buttons) button.disabled = false;
    }
  }
}

// The cards of one page, found by the model's id for the call. That id is
// unique within a run; `run_id` tells apart two runs that reuse one.
export class ToolCalls {
  constructor() {
    this.cards = new Map();
  }

  clear() {
    this.cards.clear();
  }

  get(runId, toolCallId) {
    return this.cards.get(`${runId ?? ""}:${toolCallId}`) || this.cards.get(`:${toolCallId}`);
  }

  forgetRun(runId) {
    for (const [key, card] of this.cards) if (card.call.run_id === runId) this.cards.delete(key);
  }

  // The card for a call, made (and reported as new) if there is none yet.
  card(runId, toolCallId, { open = false } = {}) {
    let card = this.get(runId, toolCallId);
    let made = false;
    if (!card) {
      card = new ToolCallCard({ run_id: runId, tool_call_id: toolCallId }, { open });
      made = true;
    }
    // A card first known without its run gets filed under it once known.
    const key = `${runId ?? ""}:${toolCallId}`;
    if (card.key !== key) {
      if (card.key) this.cards.delete(card.key);
      card.key = key;
      this.cards.set(key, card);
    }
    return { card, made };
  }

  // Apply a tool_call_* frame; returns the card and whether it is new. Every
  // frame names the call (`name`, `function`); those about a stored call
  // also carry its row's id as `call_id`.
  frame(frame) {
    const { card, made } = this.card(frame.run_id, frame.tool_call_id, { open: true });
    const named = { id: frame.call_id, name: frame.name, function: frame.function, round: frame.round, position: frame.position };
    switch (frame.type) {
      case "tool_call_started":
        card.update(named);
        break;
      case "tool_call_arguments_delta":
        // `arguments` is the next piece of the JSON text here.
        card.update(named);
        card.appendArguments(frame.arguments);
        break;
      case "tool_call_approval_required":
        card.update({
          ...named,
          arguments: frame.arguments,
          approval_deadline: frame.approval_deadline,
          requires_approval: true,
          status: "awaiting_approval",
        });
        break;
      case "tool_call_completed":
      case "tool_call_failed":
        card.update({
          ...named,
          status: frame.status,
          // A failed call's tool message (which may have come first) says
          // its error to the model: the card shows that as the error.
          result: frame.type === "tool_call_failed" ? null : frame.result,
          truncated: frame.truncated,
          error: frame.error,
          duration_ms: frame.duration_ms,
          decided_by: frame.decided_by,
          decision_reason: frame.decision_reason,
        });
        break;
    }
    return { card, made };
  }

  // The calls an assistant message asked for, in its order.
  fromAssistant(message) {
    return (message.tool_calls || []).map((requested) => {
      const found = this.card(message.run_id, requested.id);
      // The message names the function the model saw; the agent's entry
      // (mcp:<server>/<tool>) comes with a frame or the run's rows.
      found.card.update({ function: requested.function?.name, arguments: requested.function?.arguments ?? "" });
      return found;
    });
  }

  // A stored tool result: the answer of a call already shown. A failed
  // call's answer is its error, which the card already shows as such.
  fromToolMessage(message) {
    const found = this.card(message.run_id, message.tool_call_id);
    const call = found.card.call;
    const failed = FAILED.has(call.status) || Boolean(call.error);
    if (!failed && (call.result === null || call.result === undefined)) {
      found.card.update({ result: message.content, status: ANSWERED });
    } else found.card.update({ status: ANSWERED });
    return found;
  }

  // A run's rows (GET /api/runs/{id}/tool-calls): the whole truth about each call.
  fromRows(rows) {
    return rows.map((row) => {
      const found = this.card(row.run_id, row.tool_call_id);
      found.card.update(row);
      return found;
    });
  }
}
