// The table of the first rows of a result, with each column's Arrow type under its name.

import { DataType } from "apache-arrow";
import { KIND, kindOfType } from "./columns.js";
import { formatNumber, formatTimestamp, truncate } from "./format.js";

export const TABLE_ROWS = 100;

export class FirstRows {
  constructor(table, caption) {
    this.table = table;
    this.caption = caption;
    this.fields = [];
    this.rows = 0;
  }

  /** Clear and set the header from an Arrow schema (or nothing); `typeNames` overrides type labels. */
  reset(schema = null, typeNames = new Map()) {
    this.rows = 0;
    this.fields = schema ? schema.fields : [];
    const head = document.createElement("thead");
    const row = head.insertRow();
    for (const field of this.fields) {
      const th = document.createElement("th");
      th.scope = "col";
      const name = document.createElement("span");
      name.className = "col-name";
      name.textContent = field.name;
      const type = document.createElement("span");
      type.className = "col-type";
      type.textContent = typeNames.get(field.name) ?? String(field.type);
      th.append(name, type);
      if (kindOfType(field.type) === KIND.NUMBER) th.classList.add("num");
      row.append(th);
    }
    this.table.replaceChildren(head, document.createElement("tbody"));
    this.#caption();
  }

  /** Append rows from a batch until TABLE_ROWS are shown; false once full. */
  add(batch) {
    if (this.rows >= TABLE_ROWS) return false;
    const take = Math.min(batch.numRows, TABLE_ROWS - this.rows);
    const body = this.table.tBodies[0];
    const columns = this.fields.map((f) => batch.getChild(f.name));
    const numeric = this.fields.map((f) => kindOfType(f.type) === KIND.NUMBER);
    const fragment = document.createDocumentFragment();
    for (let i = 0; i < take; i++) {
      const tr = document.createElement("tr");
      columns.forEach((vector, c) => {
        const td = document.createElement("td");
        const value = vector ? vector.get(i) : null;
        if (value == null) {
          td.className = "null";
          td.textContent = "null";
        } else {
          td.textContent = formatCell(value, this.fields[c].type);
          if (numeric[c]) td.classList.add("num");
        }
        tr.append(td);
      });
      fragment.append(tr);
    }
    body.append(fragment);
    this.rows += take;
    this.#caption();
    return this.rows < TABLE_ROWS;
  }

  #caption() {
    this.caption.textContent = this.fields.length
      ? `first ${this.rows} row${this.rows === 1 ? "" : "s"} · ${this.fields.length} columns`
      : "";
  }
}

function formatCell(value, type) {
  if (DataType.isTimestamp(type)) return formatTimestamp(Number(value));
  if (DataType.isDate(type)) {
    return formatTimestamp(value instanceof Date ? value.getTime() : Number(value), { dateOnly: true });
  }
  if (typeof value === "number" || typeof value === "bigint") return formatNumber(value);
  if (typeof value === "boolean") return String(value);
  if (typeof value === "string") return truncate(value);
  if (value instanceof Uint8Array) return truncate(`0x${[...value.subarray(0, 40)].map((b) => b.toString(16).padStart(2, "0")).join("")}`);
  try {
    return truncate(JSON.stringify(value.toJSON ? value.toJSON() : value, (_, v) => (typeof v === "bigint" ? v.toString() : v)));
  } catch {
    return truncate(String(value));
  }
}
