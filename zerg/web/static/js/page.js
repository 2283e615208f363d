// What every page does on start: load its state through REST (which asks for
// the token on a 401), then go live over the websocket.

import { AuthRequired } from "./api.js";
import { Live } from "./live.js";
import { el, report } from "./dom.js";

export function livePage({ topics, load, onEvent }) {
  const live = new Live({
    topics,
    onEvent: (frame) => {
      try {
        onEvent(frame);
      } catch (error) {
        report(error);
      }
    },
    resync: () => load().catch(report),
  });
  const start = async () => {
    try {
      await load();
    } catch (error) {
      if (error.status === 404) {
        showNotFound(error);
        return;
      }
      report(error);
      if (error instanceof AuthRequired) return;
    }
    live.start();
  };
  return { live, start };
}

// The page's subject does not exist (a wrong link, or deleted): say so and
// offer the way back, in place of the controls that would act on it.
function showNotFound(error) {
  console.warn(error);
  const detail = error.message.charAt(0).toUpperCase() + error.message.slice(1);
  document.title = "Not found · zerg";
  document.getElementById("live-status").hidden = true;
  document.getElementById("main").replaceChildren(
    el("h1", { text: "Not found" }),
    el("p", { text: `${detail}: it may have been deleted.` }),
    el("p", {}, el("a", { href: "/", text: "Back to the agents" })),
  );
}

// Fetch every page of a list (the API caps a page at 500 items).
export async function all(api, path, query = {}) {
  const limit = 500;
  const items = [];
  for (let skip = 0; ; skip += limit) {
    const page = await api.get(path, { ...query, skip, limit });
    items.push(...page);
    if (page.length < limit) return items;
  }
}

// A list shown a page at a time: asks for one item more than a page, to know
// whether a next page exists (the API's lists have no total), and drives the
// Previous/Next buttons in <nav id="{name}-pages">.
export class Pager {
  constructor(name, size, reload) {
    this.size = size;
    this.skip = 0;
    this.more = false;
    this.asked = 0;
    this.nav = document.getElementById(`${name}-pages`);
    this.previous = this.nav.querySelector("[data-page=previous]");
    this.next = this.nav.querySelector("[data-page=next]");
    this.label = this.nav.querySelector("[data-page=label]");
    this.previous.addEventListener("click", () => this.move(-1, reload));
    this.next.addEventListener("click", () => this.move(1, reload));
  }

  // The page's items, or null when a later page or search was asked for
  // meanwhile: only the latest answer is shown.
  async fetch(api, path, query) {
    const asked = ++this.asked;
    const items = await api.get(path, { ...query, skip: this.skip, limit: this.size + 1 });
    if (asked !== this.asked) return null;
    this.more = items.length > this.size;
    this.show();
    return items.slice(0, this.size);
  }

  // Back to the first page, as after a new search.
  reset() {
    this.skip = 0;
  }

  // Show the next or previous page from its top (a short last page would
  // otherwise leave the view below the list).
  move(by, reload) {
    this.skip = Math.max(0, this.skip + by * this.size);
    reload()
      .then(() => this.nav.parentElement.scrollIntoView({ block: "start" }))
      .catch(report);
  }

  show() {
    this.nav.hidden = this.skip === 0 && !this.more;
    this.previous.disabled = this.skip === 0;
    this.next.disabled = !this.more;
    this.label.textContent = `Page ${this.skip / this.size + 1}`;
  }
}

// Call `action` (async) once typing has paused.
export function debounced(action, wait = 300) {
  let timer = null;
  return () => {
    clearTimeout(timer);
    timer = setTimeout(() => action().catch(report), wait);
  };
}

// Keep focus where it was when a row is rebuilt (keyboard users lose their place otherwise).
export function replaceKeepingFocus(old, fresh) {
  const focused = old?.contains(document.activeElement) ? document.activeElement.dataset.focus : null;
  if (old) old.replaceWith(fresh);
  if (focused) fresh.querySelector(`[data-focus="${focused}"]`)?.focus();
}
