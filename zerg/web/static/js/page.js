// What every page does on start: load its state through REST (which asks for
// the token on a 401), then go live over the websocket.

import { AuthRequired } from "./api.js";
import { Live } from "./live.js";
import { report } from "./dom.js";

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
      report(error);
      if (error instanceof AuthRequired || error.status === 404) return;
    }
    live.start();
  };
  return { live, start };
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

// Keep focus where it was when a row is rebuilt (keyboard users lose their place otherwise).
export function replaceKeepingFocus(old, fresh) {
  const focused = old?.contains(document.activeElement) ? document.activeElement.dataset.focus : null;
  if (old) old.replaceWith(fresh);
  if (focused) fresh.querySelector(`[data-focus="${focused}"]`)?.focus();
}
