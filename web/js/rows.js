// The table's rows as text, made in the decoding worker: the first TABLE_ROWS rows of a
// result, or for a live stream the latest ones, newest first, re-sent at most every LATEST_MS.

import { cellText } from "./cells.js";
import { TABLE_ROWS } from "./protocol.js";

const LATEST_MS = 250;

export class RowText {
  constructor(latest) {
    this.latest = latest;
    this.fields = []; // Arrow fields (their metadata names extension types)
    this.count = 0; // first rows made so far
    this.pending = []; // first rows not sent yet
    this.recent = []; // latest mode: the last batches, enough for TABLE_ROWS rows
    this.changed = false;
    this.sentAt = null;
  }

  setSchema(schema) {
    this.fields = schema?.fields ?? [];
  }

  add(batch) {
    if (batch.numRows === 0) return;
    if (this.latest) {
      this.recent.push(batch);
      let rows = this.recent.reduce((sum, b) => sum + b.numRows, 0);
      while (rows - this.recent[0].numRows >= TABLE_ROWS) rows -= this.recent.shift().numRows;
      this.changed = true;
    } else if (this.count < TABLE_ROWS) {
      const take = Math.min(batch.numRows, TABLE_ROWS - this.count);
      const columns = this.#columns(batch);
      for (let i = 0; i < take; i++) this.pending.push(this.#row(columns, i));
      this.count += take;
    }
  }

  /** Rows for the page, if any are due: `{replace, rows}` (each row: cell texts, null = null). */
  take(now, final = false) {
    if (!this.latest) {
      if (!this.pending.length) return null;
      return { replace: false, rows: this.pending.splice(0) };
    }
    if (!this.changed || (!final && this.sentAt != null && now - this.sentAt < LATEST_MS)) return null;
    this.changed = false;
    this.sentAt = now;
    const rows = [];
    for (let b = this.recent.length - 1; b >= 0 && rows.length < TABLE_ROWS; b--) {
      const columns = this.#columns(this.recent[b]);
      for (let i = this.recent[b].numRows - 1; i >= 0 && rows.length < TABLE_ROWS; i--) {
        rows.push(this.#row(columns, i));
      }
    }
    return { replace: true, rows };
  }

  /** Whether rows wait for their time to be sent (latest mode). */
  get waiting() {
    return this.changed;
  }

  #columns(batch) {
    return this.fields.map((_, c) => batch.getChildAt(c));
  }

  #row(columns, i) {
    return columns.map((vector, c) => (vector ? cellText(vector, i, this.fields[c]) : null));
  }
}
