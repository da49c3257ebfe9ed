// Number, size, time and cell formatting shared by the dashboard's views.

const INTEGER = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });
const DECIMAL = new Intl.NumberFormat("en-US", { maximumFractionDigits: 1, minimumFractionDigits: 1 });
const SIZE_UNITS = ["B", "KB", "MB", "GB", "TB"];
const CELL_TEXT_MAX = 80;

export function formatCount(value) {
  return value == null || value < 0 ? "unknown" : INTEGER.format(value);
}

export function formatBytes(bytes) {
  if (bytes == null || bytes < 0) return "unknown";
  let value = bytes;
  let unit = 0;
  while (value >= 1000 && unit < SIZE_UNITS.length - 1) {
    value /= 1000;
    unit += 1;
  }
  return unit === 0 ? `${value} B` : `${DECIMAL.format(value)} ${SIZE_UNITS[unit]}`;
}

export function formatMegabytes(bytes) {
  return `${DECIMAL.format(bytes / 1e6)} MB`;
}

export function formatRate(bytes, seconds) {
  return seconds > 0 && bytes > 0 ? `${DECIMAL.format(bytes / 1e6 / seconds)} MB/s` : "–";
}

export function formatSeconds(seconds) {
  if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
  return `${seconds.toFixed(seconds < 10 ? 2 : 1)} s`;
}

const pad = (n, width = 2) => String(n).padStart(width, "0");

/** Milliseconds since the epoch as `YYYY-MM-DD HH:MM:SS(.mmm)`, always UTC. */
export function formatTimestamp(ms, { dateOnly = false } = {}) {
  if (!Number.isFinite(ms)) return String(ms);
  const d = new Date(ms);
  const date = `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}`;
  if (dateOnly) return date;
  const time = `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}`;
  const millis = d.getUTCMilliseconds();
  return `${date} ${time}${millis ? `.${pad(millis, 3)}` : ""}`;
}

/** A short time label for a chart tick, precise enough for the visible span. */
export function formatTick(ms, spanMs) {
  if (!Number.isFinite(ms)) return "";
  const d = new Date(ms);
  const day = `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}`;
  const minutes = `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}`;
  if (spanMs > 20 * 86400e3) return day;
  if (spanMs > 2 * 86400e3) return `${day.slice(5)} ${minutes}`;
  if (spanMs > 120e3) return minutes;
  const millis = d.getUTCMilliseconds();
  return `${minutes}:${pad(d.getUTCSeconds())}${millis ? `.${pad(millis, 3)}` : ""}`;
}

export function formatNumber(value) {
  if (typeof value === "bigint") return value.toLocaleString("en-US");
  if (!Number.isFinite(value)) return String(value);
  if (Number.isInteger(value)) return value.toLocaleString("en-US");
  const magnitude = Math.abs(value);
  if (magnitude !== 0 && (magnitude < 1e-4 || magnitude >= 1e15)) return value.toExponential(4);
  return value.toLocaleString("en-US", { maximumFractionDigits: 6 });
}

export function truncate(text, max = CELL_TEXT_MAX) {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}
