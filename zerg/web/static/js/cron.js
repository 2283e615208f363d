// A 5-field cron expression (UTC) in words, for people rather than parsers.
// It covers the common shapes and says nothing ("") about the rest; the
// server remains the judge of validity (its 422 says what is wrong).

const DAYS = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"];
const MONTHS = [
  "", "January", "February", "March", "April", "May", "June",
  "July", "August", "September", "October", "November", "December",
];
const DAY_NAMES = { sun: 0, mon: 1, tue: 2, wed: 3, thu: 4, fri: 5, sat: 6 };
const MONTH_NAMES = {
  jan: 1, feb: 2, mar: 3, apr: 4, may: 5, jun: 6, jul: 7, aug: 8, sep: 9, oct: 10, nov: 11, dec: 12,
};

const number = (text, names) => {
  const key = text.toLowerCase();
  if (names && key in names) return names[key];
  return /^\d+$/.test(text) ? Number(text) : NaN;
};

const pad = (value) => String(value).padStart(2, "0");

function list(items) {
  if (items.length < 2) return items.join("");
  return `${items.slice(0, -1).join(", ")} and ${items[items.length - 1]}`;
}

// "1-5" → "Monday to Friday", "1,3" → "Monday and Wednesday", with `name` per value.
function describeList(field, name, names) {
  const parts = field.split(",").map((part) => {
    const [range, step] = part.split("/");
    let text;
    if (range === "*") text = null;
    else if (range.includes("-")) {
      const [low, high] = range.split("-").map((value) => number(value, names));
      if (Number.isNaN(low) || Number.isNaN(high)) throw new Error(part);
      text = `${name(low)} to ${name(high)}`;
    } else {
      const value = number(range, names);
      if (Number.isNaN(value)) throw new Error(part);
      text = name(value);
    }
    if (step) return text ? `every ${step}th from ${text}` : `every ${step}th`;
    if (text === null) throw new Error(part);
    return text;
  });
  return list(parts);
}

function describeTime(minute, hour) {
  const single = (field) => /^\d+$/.test(field);
  if (single(minute) && single(hour)) return `at ${pad(hour)}:${pad(minute)} UTC`;
  if (minute === "*" && hour === "*") return "every minute";
  const everyMinutes = /^\*\/(\d+)$/.exec(minute);
  if (everyMinutes && hour === "*") return `every ${everyMinutes[1]} minutes`;
  if (everyMinutes) return `every ${everyMinutes[1]} minutes during hour ${describeList(hour, String)} UTC`;
  if (single(minute) && hour === "*") {
    return minute === "0" ? "every hour, on the hour" : `every hour at ${minute} minutes past`;
  }
  const everyHours = /^\*\/(\d+)$/.exec(hour);
  if (single(minute) && everyHours) {
    const past = minute === "0" ? "on the hour" : `at ${minute} minutes past`;
    return `every ${everyHours[1]} hours, ${past} (UTC)`;
  }
  if (hour === "*") return `every hour at minute ${describeList(minute, String)}`;
  const minutes = minute === "*" ? "every minute" : `at minute ${describeList(minute, String)}`;
  const hours = hour === "*" ? "" : ` of hour ${describeList(hour, String)} UTC`;
  return `${minutes}${hours}`;
}

export function describeCron(expression) {
  if (!expression) return "";
  const fields = expression.trim().split(/\s+/);
  if (fields.length !== 5) return "";
  const [minute, hour, dom, month, dow] = fields;
  try {
    const parts = [describeTime(minute, hour)];
    if (dom !== "*") parts.push(`on day ${describeList(dom, String)} of the month`);
    if (month !== "*") parts.push(`in ${describeList(month, (m) => MONTHS[m] ?? m, MONTH_NAMES)}`);
    if (dow !== "*") {
      const days = dow === "1-5" ? "weekdays (Monday to Friday)" : describeList(dow, (d) => DAYS[d] ?? d, DAY_NAMES);
      parts.push(`${dom !== "*" ? "or" : "on"} ${days}`);
    }
    const text = parts.join(" ");
    return text.charAt(0).toUpperCase() + text.slice(1);
  } catch {
    return "";
  }
}
