// The chart's data in the decoding worker: the chosen columns of every batch, downsampled as
// they arrive, and the batches kept (up to RETAIN_BYTES) so other columns can be charted again.

import { chooseChart } from "./columns.js";
import { MinMaxBuckets } from "./downsample.js";
import { numericValues } from "./vectors.js";

const BUCKETS = 1000; // ≤ 2 points per bucket and series
const RETAIN_BYTES = 512e6; // keep batches (for re-charting) up to this much data

export class ChartSeries {
  /** @param choice {x, series, version} as the page chose them (see chooseChart) */
  constructor(choice) {
    this.choice = choice;
    this.fields = [];
    this.batches = [];
    this.retained = true;
    this.dirty = false;
    this.#reset();
  }

  /** The result's fields (`{name, type, kind}`) are known: chart the choice among them. */
  setFields(fields) {
    this.fields = fields;
    this.#reset();
  }

  /** One more batch; `bytes` received so far decides whether batches are still kept. */
  add(batch, bytes) {
    if (this.retained) {
      this.batches.push(batch);
      if (bytes > RETAIN_BYTES) {
        this.batches = [];
        this.retained = false;
      }
    }
    this.#add(batch);
  }

  /** Other columns: chart the kept batches again (without them, start over from here on). */
  rechart(choice) {
    this.choice = choice;
    this.#reset();
    for (const batch of this.batches) this.#add(batch);
    this.dirty = true;
  }

  /** The points to send: `series` holds one packed Float64Array per series (see packed()). */
  take() {
    this.dirty = false;
    return {
      version: this.choice.version,
      rows: this.buckets.rows,
      monotonic: this.buckets.monotonic,
      series: this.buckets.packed(),
    };
  }

  #reset() {
    const { x, series } = chooseChart(this.fields, this.choice);
    this.x = x;
    this.series = series;
    this.buckets = new MinMaxBuckets(series, BUCKETS);
  }

  #add(batch) {
    if (!this.series.length || batch.numRows === 0) return;
    const xs = this.x ? numericValues(batch.getChild(this.x.name)) : null;
    let empty = null;
    const ys = this.series.map(
      (name) => numericValues(batch.getChild(name)) ?? (empty ??= new Float64Array(batch.numRows).fill(NaN)),
    );
    this.buckets.add(xs, ys, batch.numRows);
    this.dirty = true;
  }
}
