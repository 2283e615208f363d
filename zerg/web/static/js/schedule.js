// What a schedule means, in the server's words (GET /api/schedules/preview):
// the server alone judges a cron expression, so the page never describes one
// it would refuse or that never fires.

import { api } from "./api.js";
import { el, report } from "./dom.js";

// cron → promise of its words. The words do not depend on the zone, and a
// stored schedule's never change, so each is asked for once per page.
const words = new Map();

export function preview(cron, timezone, count) {
  return api.get("/api/schedules/preview", { cron, timezone, count });
}

export function describe(cron) {
  if (!words.has(cron)) {
    const asked = preview(cron, "UTC", 1).then((answer) => answer.description);
    asked.catch(() => words.delete(cron));
    words.set(cron, asked);
  }
  return words.get(cron);
}

// A saved schedule's words and zone, filled in when the server answers.
export function scheduleWords(cron, timezone) {
  const span = el("span", { class: "schedule-words" });
  describe(cron).then((text) => {
    span.textContent = `${text} (${timezone}) `;
  }, report);
  return span;
}
