// The table of the first rows of a result (or, for a live stream, the latest rows, newest
// first), with each column's type under its name. The cells' text comes made by the decoding
// worker (rows.js); this only builds the DOM.

import { KIND } from "./columns.js";

export class FirstRows {
  constructor(table, caption) {
    this.table = table;
    this.caption = caption;
    this.fields = [];
    this.omitted = []; // columns left out: {name, type, why}
    this.rows = 0;
    this.latest = false;
    this.title = null; // the panel's title, when not "First rows" / "Latest rows"
  }

  /**
   * Clear and set the header from the result's fields (`{name, type, kind}`, or none);
   * `typeNames` overrides type labels; `omitted` columns (this page cannot decode their type)
   * get a header and a note; `title` names the panel (default: first or latest rows).
   */
  reset(fields = null, typeNames = new Map(), { latest = false, omitted = [], title = null } = {}) {
    this.rows = 0;
    this.latest = latest;
    this.title = title;
    this.omitted = fields ? omitted : [];
    this.fields = fields ?? [];
    const head = document.createElement("thead");
    const row = head.insertRow();
    for (const field of this.fields) {
      const th = headerCell(field.name, typeNames.get(field.name) ?? field.type);
      if (field.kind === KIND.NUMBER) th.classList.add("num");
      row.append(th);
    }
    for (const column of this.omitted) {
      const th = headerCell(column.name, column.type);
      th.className = "omitted";
      th.title = `not shown: this browser's Arrow library cannot decode ${column.why}`;
      row.append(th);
    }
    this.table.replaceChildren(head, document.createElement("tbody"));
    this.#caption();
  }

  /** Show rows from the worker: `{replace, rows}`, each row the cells' text (null = null). */
  show({ replace, rows }) {
    const fragment = document.createDocumentFragment();
    for (const cells of rows) fragment.append(this.#row(cells));
    if (replace) {
      this.table.tBodies[0].replaceChildren(fragment);
      this.rows = rows.length;
    } else {
      this.table.tBodies[0].append(fragment);
      this.rows += rows.length;
    }
    this.#caption();
  }

  #row(cells) {
    const tr = document.createElement("tr");
    cells.forEach((text, c) => {
      const td = document.createElement("td");
      if (text == null) {
        td.className = "null";
        td.textContent = "null";
      } else {
        td.textContent = text;
        if (this.fields[c]?.kind === KIND.NUMBER) td.className = "num";
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
    return tr;
  }

  #caption() {
    const title = this.table.closest(".panel")?.querySelector("h2");
    if (title) title.textContent = this.title ?? (this.latest ? "Latest rows" : "First rows");
    const omitted = this.omitted.length
      ? ` · not shown (this browser cannot decode them): ${this.omitted.map((c) => `${c.name} (${c.type})`).join(", ")}`
      : "";
    this.caption.textContent = this.fields.length || this.omitted.length
      ? `${this.latest ? "latest" : "first"} ${this.rows} row${this.rows === 1 ? "" : "s"}${this.latest ? ", newest first" : ""} · ${this.fields.length} columns${omitted}`
      : "";
  }
}

function headerCell(name, type) {
  const th = document.createElement("th");
  th.scope = "col";
  const label = document.createElement("span");
  label.className = "col-name";
  label.textContent = name;
  const kind = document.createElement("span");
  kind.className = "col-type";
  kind.textContent = type;
  th.append(label, kind);
  return th;
}
