// The table of the first rows of a result (or, for a live stream, the latest rows, newest
// first), with each column's type under its name.

import { cellText } from "./cells.js";
import { KIND, kindOfType } from "./columns.js";

export const TABLE_ROWS = 100;
const LATEST_REDRAW_MS = 250;

export class FirstRows {
  constructor(table, caption) {
    this.table = table;
    this.caption = caption;
    this.fields = [];
    this.omitted = []; // columns left out: {name, type, why}
    this.rows = 0;
    this.latest = false;
    this.recent = []; // latest mode: the last batches, enough for TABLE_ROWS rows
    this.timer = null;
  }

  /**
   * Clear and set the header from an Arrow schema (or nothing); `typeNames` overrides type
   * labels; `omitted` columns (this page cannot decode their type) get a header and a note.
   */
  reset(schema = null, typeNames = new Map(), { latest = false, omitted = [] } = {}) {
    this.rows = 0;
    this.latest = latest;
    this.omitted = schema ? omitted : [];
    this.recent = [];
    clearTimeout(this.timer);
    this.timer = null;
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
    for (const column of this.omitted) {
      const th = document.createElement("th");
      th.scope = "col";
      th.className = "omitted";
      th.title = `not shown: this browser's Arrow library cannot decode ${column.why}`;
      const name = document.createElement("span");
      name.className = "col-name";
      name.textContent = column.name;
      const type = document.createElement("span");
      type.className = "col-type";
      type.textContent = column.type;
      th.append(name, type);
      row.append(th);
    }
    this.table.replaceChildren(head, document.createElement("tbody"));
    this.#caption();
  }

  /** Show rows of a batch: the first TABLE_ROWS, or in latest mode the newest ones. */
  add(batch) {
    if (this.latest) {
      this.#keepRecent(batch);
      return;
    }
    if (this.rows >= TABLE_ROWS) return;
    const take = Math.min(batch.numRows, TABLE_ROWS - this.rows);
    this.table.tBodies[0].append(this.#rows(batch, 0, take, false));
    this.rows += take;
    this.#caption();
  }

  #keepRecent(batch) {
    if (batch.numRows === 0) return;
    this.recent.push(batch);
    let rows = this.recent.reduce((sum, b) => sum + b.numRows, 0);
    while (rows - this.recent[0].numRows >= TABLE_ROWS) rows -= this.recent.shift().numRows;
    if (!this.timer) {
      const first = this.rows === 0;
      this.timer = setTimeout(() => this.#renderRecent(), first ? 0 : LATEST_REDRAW_MS);
    }
  }

  #renderRecent() {
    this.timer = null;
    const fragment = document.createDocumentFragment();
    let shown = 0;
    for (let b = this.recent.length - 1; b >= 0 && shown < TABLE_ROWS; b--) {
      const batch = this.recent[b];
      const take = Math.min(batch.numRows, TABLE_ROWS - shown);
      fragment.append(this.#rows(batch, batch.numRows - take, batch.numRows, true));
      shown += take;
    }
    this.table.tBodies[0].replaceChildren(fragment);
    this.rows = shown;
    this.#caption();
  }

  /** Table rows for batch rows [start, end), in order or newest first. */
  #rows(batch, start, end, newestFirst) {
    const columns = this.fields.map((f) => batch.getChild(f.name));
    const numeric = this.fields.map((f) => kindOfType(f.type) === KIND.NUMBER);
    const fragment = document.createDocumentFragment();
    for (let k = start; k < end; k++) {
      const i = newestFirst ? end - 1 - (k - start) : k;
      const tr = document.createElement("tr");
      columns.forEach((vector, c) => {
        const td = document.createElement("td");
        const text = vector ? cellText(vector, i, this.fields[c]) : null;
        if (text == null) {
          td.className = "null";
          td.textContent = "null";
        } else {
          td.textContent = text;
          if (numeric[c]) td.classList.add("num");
        }
        tr.append(td);
      });
      for (const column of this.omitted) {
        const td = document.createElement("td");
        td.className = "null omitted";
        td.textContent = "not shown";
        td.title = `this browser's Arrow library cannot decode ${column.why}`;
        tr.append(td);
      }
      fragment.append(tr);
    }
    return fragment;
  }

  #caption() {
    const title = this.table.closest(".panel")?.querySelector("h2");
    if (title) title.textContent = this.latest ? "Latest rows" : "First rows";
    const omitted = this.omitted.length
      ? ` · not shown (this browser cannot decode them): ${this.omitted.map((c) => `${c.name} (${c.type})`).join(", ")}`
      : "";
    this.caption.textContent = this.fields.length || this.omitted.length
      ? `${this.latest ? "latest" : "first"} ${this.rows} row${this.rows === 1 ? "" : "s"}${this.latest ? ", newest first" : ""} · ${this.fields.length} columns${omitted}`
      : "";
  }
}
