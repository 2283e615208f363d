// The agent form's tools: every tool GET /api/tools offers, grouped by where
// it comes from (built in, or an MCP server), each with a box that gives it
// to the agent and one that makes its calls wait for a person's yes. Entries
// the agent has that are not offered now (a server disabled or gone) stay
// listed and ticked, so saving the form never drops them unseen.

import { el } from "./dom.js";

const BUILTIN = "builtin";

function groupTitle(source) {
  if (source === BUILTIN) return "Built-in tools";
  if (source.startsWith("mcp:")) return `MCP server ${source.slice(4)}`;
  return source;
}

export class ToolPicker {
  constructor(container, empty) {
    this.container = container;
    this.empty = empty;
    this.offered = [];
    this.chosen = new Set();
    this.asking = new Set();
  }

  // The tools on offer, keeping what is ticked.
  offer(tools) {
    this.capture();
    this.offered = tools;
    this.render();
  }

  // Show an agent's choice (or none, for a new agent).
  set(tools = [], approvalRequired = []) {
    this.chosen = new Set(tools);
    this.asking = new Set(approvalRequired);
    this.render();
  }

  // What the API takes: the entries, and those of them that need approval.
  value() {
    this.capture();
    return { tools: [...this.chosen], approval_required: [...this.asking].filter((entry) => this.chosen.has(entry)) };
  }

  // Read the boxes as they are ticked now.
  capture() {
    for (const box of this.container.querySelectorAll("input[name=tools]")) {
      if (box.checked) this.chosen.add(box.value);
      else this.chosen.delete(box.value);
    }
    for (const box of this.container.querySelectorAll("input[name=approval_required]")) {
      if (box.checked) this.asking.add(box.value);
      else this.asking.delete(box.value);
    }
  }

  render() {
    const groups = new Map();
    for (const tool of this.offered) {
      if (!groups.has(tool.source)) groups.set(tool.source, []);
      groups.get(tool.source).push(tool);
    }
    const offered = new Set(this.offered.map((tool) => tool.entry));
    const missing = [...this.chosen].filter((entry) => !offered.has(entry));
    const sources = [...groups.keys()].sort((a, b) => (a === BUILTIN ? -1 : b === BUILTIN ? 1 : a.localeCompare(b)));
    let index = 0;
    const row = (entry, about) => this.choice(entry, about, index++);
    const fieldsets = sources.map((source) =>
      el(
        "fieldset",
        { class: "tool-group" },
        el("legend", { text: groupTitle(source) }),
        el("ul", {}, groups.get(source).map((tool) => row(tool.entry, tool.description))),
      ),
    );
    if (missing.length) {
      fieldsets.push(
        el(
          "fieldset",
          { class: "tool-group" },
          el("legend", { text: "Not offered now" }),
          el("ul", {}, missing.map((entry) => row(entry, "The agent has this tool, but no server offers it now."))),
        ),
      );
    }
    this.container.replaceChildren(...fieldsets);
    this.empty.hidden = fieldsets.length > 0;
  }

  choice(entry, about, index) {
    const id = `tool-${index}`;
    const use = el("input", {
      id,
      type: "checkbox",
      name: "tools",
      value: entry,
      checked: this.chosen.has(entry),
      "aria-describedby": about ? `${id}-about` : null,
    });
    const ask = el("input", {
      id: `${id}-ask`,
      type: "checkbox",
      name: "approval_required",
      value: entry,
      checked: this.asking.has(entry),
      disabled: !this.chosen.has(entry),
    });
    use.addEventListener("change", () => {
      ask.disabled = !use.checked;
    });
    return el(
      "li",
      { class: "tool-choice", dataset: { entry } },
      el("span", { class: "switch" }, use, el("label", { for: id }, el("code", { text: entry }))),
      el(
        "span",
        { class: "switch" },
        ask,
        el("label", { for: `${id}-ask` }, "Ask before each call", el("span", { class: "visually-hidden", text: `: ${entry}` })),
      ),
      about ? el("p", { id: `${id}-about`, class: "hint", text: about }) : null,
    );
  }
}
