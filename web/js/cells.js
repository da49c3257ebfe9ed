// The text of one table cell, for every Arrow type, read from the column's buffers by its
// type (apache-arrow's own `get()` loses digits of 64-bit times and decimals, shows time zones
// as UTC, and fails on 64-bit dictionary indices). The forms follow `streamkit query`:
// decimals exact; dates, times and timestamps with every digit of their unit, timestamps in
// their zone with its offset; durations in seconds; nested values (lists, maps, structs) as
// JSON text; unions as their value; `arrow.uuid` as 8-4-4-4-12 hex. Runs in the decoding worker.

import { DataType, Type, UnionMode, Vector } from "./arrow.js";
import { formatNumber, truncate } from "./format.js";

const EXTENSION = "ARROW:extension:name";
const UNIT_DIGITS = [0, 3, 6, 9]; // TimeUnit.SECOND … NANOSECOND
const DAY_MS = 86400e3;
const FIXED_OFFSET = /^([+-])(\d\d):?(\d\d)$/;
const zoneFormats = new Map();
const leafVectors = new WeakMap();

/** The cell text of row `index` of `vector` (a column of a batch); null for a null value. */
export function cellText(vector, index, field) {
  const [data, i] = locate(vector.data, index);
  const text = valueText(data, i, field);
  return text == null ? null : truncate(text);
}

function locate(chunks, index) {
  let i = index;
  for (const data of chunks) {
    if (i < data.length) return [data, i];
    i -= data.length;
  }
  throw new RangeError(`row ${index} is past the end`);
}

/** Top-level text: strings and numbers bare, nested values as JSON. */
function valueText(data, i, field) {
  const { type } = data;
  if (DataType.isUnion(type)) {
    const [child, j, childField] = unionChild(data, i);
    return valueText(child, j, childField);
  }
  if (!data.getValid(i)) return null;
  const extension = field?.metadata?.get(EXTENSION);
  if (extension === "arrow.uuid") return uuid(leaf(data, i));
  if (extension === "arrow.bool8") return String(leaf(data, i) !== 0);
  if (DataType.isDictionary(type)) {
    const [values, j] = locate(data.dictionary.data, Number(data.values[i]));
    return valueText(values, j, null);
  }
  switch (type.typeId) {
    case Type.Int:
    case Type.Float:
      return formatNumber(leaf(data, i));
    case Type.Decimal:
      return decimal(data, i);
    case Type.Date:
      return isoDate(type.unit === 0 ? Number(data.values[i]) * DAY_MS : Number(data.values[i]));
    case Type.Time:
      return timeOfDay(BigInt(data.values[i]), type.unit);
    case Type.Timestamp:
      return timestamp(BigInt(data.values[i]), type.unit, type.timezone);
    case Type.Duration:
      return `${seconds(BigInt(data.values[i]), type.unit)} s`;
    case Type.Interval: {
      const { months, days, nanoseconds } = interval(data, i);
      return `{"months": ${months}, "days": ${days}, "nanoseconds": ${nanoseconds}}`;
    }
    case Type.Utf8:
    case Type.LargeUtf8:
    case Type.Utf8View:
      return leaf(data, i);
    case Type.Binary:
    case Type.LargeBinary:
    case Type.BinaryView:
    case Type.FixedSizeBinary:
      return hex(leaf(data, i));
    case Type.Bool:
      return String(leaf(data, i));
    case Type.Null:
      return null;
    default:
      return jsonText(data, i, field);
  }
}

/** JSON text of a value at any depth (`null` for a null). */
function jsonText(data, i, field) {
  const { type } = data;
  if (DataType.isUnion(type)) {
    const [child, j, childField] = unionChild(data, i);
    return jsonText(child, j, childField);
  }
  if (!data.getValid(i)) return "null";
  const extension = field?.metadata?.get(EXTENSION);
  if (extension === "arrow.uuid" || extension === "arrow.bool8") {
    return extension === "arrow.bool8" ? valueText(data, i, field) : JSON.stringify(valueText(data, i, field));
  }
  if (extension === "arrow.json") return leaf(data, i);
  const children = type.children ?? [];
  switch (type.typeId) {
    case Type.Int:
      return String(leaf(data, i));
    case Type.Float: {
      const value = leaf(data, i);
      return Number.isFinite(value) ? String(value) : "null";
    }
    case Type.Bool:
      return String(leaf(data, i));
    case Type.Duration:
      return seconds(BigInt(data.values[i]), type.unit);
    case Type.Interval:
      return valueText(data, i, field);
    case Type.Null:
      return "null";
    case Type.List:
    case Type.LargeList: {
      const [begin, end] = [Number(data.valueOffsets[i]), Number(data.valueOffsets[i + 1])];
      return list(data.children[0], begin, end, children[0]);
    }
    case Type.FixedSizeList:
      return list(data.children[0], i * type.listSize, (i + 1) * type.listSize, children[0]);
    case Type.Map: {
      const entries = data.children[0];
      const [keys, values] = entries.children;
      const [keyField, valueField] = entries.type.children;
      const parts = [];
      for (let k = Number(data.valueOffsets[i]); k < Number(data.valueOffsets[i + 1]); k++) {
        const key = jsonText(keys, k, keyField); // an object key: always a JSON string
        parts.push(`${key.startsWith('"') ? key : JSON.stringify(key)}: ${jsonText(values, k, valueField)}`);
      }
      return `{${parts.join(", ")}}`;
    }
    case Type.Struct:
      return `{${children
        .map((f, k) => `${JSON.stringify(f.name)}: ${jsonText(data.children[k], i, f)}`)
        .join(", ")}}`;
    default: {
      const text = valueText(data, i, field); // strings, binaries, decimals, temporal values
      return text == null ? "null" : JSON.stringify(text);
    }
  }
}

function list(child, begin, end, childField) {
  const parts = [];
  for (let k = begin; k < end; k++) parts.push(jsonText(child, k, childField));
  return `[${parts.join(", ")}]`;
}

function unionChild(data, i) {
  const { type } = data;
  const child = type.typeIdToChildIndex[data.typeIds[i]];
  const j = type.mode === UnionMode.Dense ? data.valueOffsets[i] : i;
  return [data.children[child], j, type.children[child]];
}

/** A value as apache-arrow reads it, for the types it reads right. */
function leaf(data, i) {
  let vector = leafVectors.get(data);
  if (!vector) {
    vector = new Vector([data]);
    leafVectors.set(data, vector);
  }
  return vector.get(i);
}

function hex(bytes) {
  return `0x${[...bytes.subarray(0, 40)].map((b) => b.toString(16).padStart(2, "0")).join("")}`;
}

function uuid(bytes) {
  const h = [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** A decimal's unscaled two's-complement integer (32 to 256 bits), with its scale's digits. */
function decimal(data, i) {
  const words = data.type.bitWidth / 32;
  const start = i * words;
  let unscaled = 0n;
  for (let w = words - 1; w >= 0; w--) unscaled = (unscaled << 32n) | BigInt(data.values[start + w] >>> 0);
  const bits = BigInt(data.type.bitWidth);
  if (unscaled >> (bits - 1n)) unscaled -= 1n << bits;
  return scaled(unscaled, data.type.scale);
}

/** `count / 10^digits` exactly, e.g. -1500 with 3 digits → `-1.500`. */
function scaled(count, digits) {
  const sign = count < 0n ? "-" : "";
  const text = (count < 0n ? -count : count).toString().padStart(digits + 1, "0");
  return digits ? `${sign}${text.slice(0, -digits)}.${text.slice(-digits)}` : `${sign}${text}`;
}

/** Exact seconds with trailing zeros trimmed: 1500 ms → `1.5`. */
function seconds(count, unit) {
  const text = scaled(count, UNIT_DIGITS[unit]);
  return text.includes(".") ? text.replace(/\.?0+$/, "") : text;
}

function interval(data, i) {
  const v = data.values; // months, days, nanoseconds (two words, little-endian)
  const nanos = (BigInt(v[4 * i + 3]) << 32n) | BigInt(v[4 * i + 2] >>> 0);
  return { months: v[4 * i], days: v[4 * i + 1], nanoseconds: nanos };
}

/** Whole seconds and the fraction's digits of a count in `unit` (floor, also before 1970). */
function split(count, unit) {
  const digits = UNIT_DIGITS[unit];
  const per = 10n ** BigInt(digits);
  let whole = count / per;
  let fraction = count % per;
  if (fraction < 0n) {
    whole -= 1n;
    fraction += per;
  }
  return [Number(whole), digits ? `.${fraction.toString().padStart(digits, "0")}` : ""];
}

const pad = (n, width = 2) => String(n).padStart(width, "0");

function isoDate(ms) {
  const d = new Date(ms);
  return `${pad(d.getUTCFullYear(), 4)}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}`;
}

function clock(d) {
  return `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}`;
}

function timeOfDay(count, unit) {
  const [whole, fraction] = split(count, unit);
  return `${clock(new Date(whole * 1e3))}${fraction}`;
}

/** `YYYY-MM-DD HH:MM:SS.fff` (every digit of the unit); zoned: local time and its offset. */
function timestamp(count, unit, zone) {
  const [whole, fraction] = split(count, unit);
  if (!zone) return `${isoDate(whole * 1e3)} ${clock(new Date(whole * 1e3))}${fraction}`;
  const [local, offset] = inZone(whole, zone);
  return `${isoDate(local * 1e3)} ${clock(new Date(local * 1e3))}${fraction}${offset}`;
}

/** Local seconds since the epoch in `zone` and the `±HH:MM` offset there. */
function inZone(whole, zone) {
  const fixed = FIXED_OFFSET.exec(zone);
  if (fixed) {
    const minutes = (fixed[1] === "-" ? -1 : 1) * (Number(fixed[2]) * 60 + Number(fixed[3]));
    return [whole + minutes * 60, `${fixed[1]}${fixed[2]}:${fixed[3]}`];
  }
  let format = zoneFormats.get(zone);
  if (!format) {
    format = new Intl.DateTimeFormat("en-US", {
      timeZone: zone,
      hourCycle: "h23",
      era: "short",
      year: "numeric",
      month: "numeric",
      day: "numeric",
      hour: "numeric",
      minute: "numeric",
      second: "numeric",
    });
    zoneFormats.set(zone, format);
  }
  const parts = Object.fromEntries(format.formatToParts(new Date(whole * 1e3)).map((p) => [p.type, p.value]));
  const year = parts.era === "BC" ? 1 - Number(parts.year) : Number(parts.year);
  const day = new Date(0);
  day.setUTCFullYear(year, parts.month - 1, parts.day); // Date.UTC takes 0-99 as 1900-1999
  const local = day.getTime() / 1e3 + parts.hour * 3600 + parts.minute * 60 + Number(parts.second);
  const shift = local - whole;
  const sign = shift < 0 ? "-" : "+";
  const size = Math.abs(shift);
  const rest = size % 60;
  const offset = `${sign}${pad(Math.floor(size / 3600))}:${pad(Math.floor(size / 60) % 60)}${rest ? `:${pad(rest)}` : ""}`;
  return [local, offset];
}
