// Incremental min/max-per-bucket downsampling: a bounded number of chart points per series,
// however many rows stream in, with each bucket's extremes kept so spikes never disappear.
//
// Buckets cover equal runs of rows. When they fill up, neighbours merge pairwise and the
// run length doubles, so the work per row is constant and memory stays fixed.

export class MinMaxBuckets {
  /** @param {string[]} names series names; @param {number} buckets points ≈ 2 × buckets */
  constructor(names, buckets = 1000) {
    this.names = names;
    this.capacity = 2 * buckets; // fill to 2×, then merge back to 1×
    this.rowsPerBucket = 1;
    this.rows = 0;
    this.monotonic = true;
    this.lastX = -Infinity;
    this.series = names.map(() => newSeries(this.capacity));
  }

  /**
   * Add rows: `xs` (Float64Array of x values, or null for the row index) and one
   * Float64Array per series (NaN = null), all of the same length.
   */
  add(xs, columns, length) {
    let offset = 0;
    while (offset < length) {
      const room = this.capacity * this.rowsPerBucket - this.rows;
      if (room <= 0) {
        this.#merge();
        continue;
      }
      const take = Math.min(room, length - offset);
      for (let s = 0; s < this.series.length; s++) {
        this.#addRun(this.series[s], xs, columns[s], offset, take);
      }
      if (xs) this.#trackOrder(xs, offset, take);
      this.rows += take;
      offset += take;
    }
  }

  #addRun(series, xs, ys, offset, take) {
    const { minX, minY, maxX, maxY, minRow, maxRow } = series;
    const per = this.rowsPerBucket;
    let row = this.rows;
    for (let i = offset; i < offset + take; i++, row++) {
      const y = ys[i];
      if (y !== y) continue; // NaN: null
      const b = Math.floor(row / per);
      const x = xs ? xs[i] : row;
      if (y < minY[b]) {
        minY[b] = y;
        minX[b] = x;
        minRow[b] = row;
      }
      if (y > maxY[b]) {
        maxY[b] = y;
        maxX[b] = x;
        maxRow[b] = row;
      }
    }
  }

  #trackOrder(xs, offset, take) {
    if (!this.monotonic) return;
    let last = this.lastX;
    for (let i = offset; i < offset + take; i++) {
      const x = xs[i];
      if (x < last) {
        this.monotonic = false;
        return;
      }
      if (x === x) last = x;
    }
    this.lastX = last;
  }

  #merge() {
    const half = this.capacity / 2;
    for (const s of this.series) {
      for (let b = 0; b < half; b++) {
        const l = 2 * b;
        const r = l + 1;
        const minFrom = s.minY[r] < s.minY[l] ? r : l;
        const maxFrom = s.maxY[r] > s.maxY[l] ? r : l;
        s.minY[b] = s.minY[minFrom];
        s.minX[b] = s.minX[minFrom];
        s.minRow[b] = s.minRow[minFrom];
        s.maxY[b] = s.maxY[maxFrom];
        s.maxX[b] = s.maxX[maxFrom];
        s.maxRow[b] = s.maxRow[maxFrom];
      }
      resetFrom(s, half);
    }
    this.rowsPerBucket *= 2;
  }

  /** Chart points `[{x, y}]` per series, in row order (a bucket's min and max as two points). */
  points() {
    return this.packed().map((xy) => {
      const out = new Array(xy.length / 2);
      for (let p = 0; p < out.length; p++) out[p] = { x: xy[2 * p], y: xy[2 * p + 1] };
      return out;
    });
  }

  /** The same points as one Float64Array per series, `[x0, y0, x1, y1, …]` (cheap to transfer). */
  packed() {
    const used = Math.ceil(this.rows / this.rowsPerBucket);
    return this.series.map((s) => {
      const out = new Float64Array(4 * used);
      let n = 0;
      for (let b = 0; b < used; b++) {
        if (s.minY[b] === Infinity) continue; // only nulls in this bucket
        const minFirst = s.minRow[b] <= s.maxRow[b];
        const [x1, y1, x2, y2] = minFirst
          ? [s.minX[b], s.minY[b], s.maxX[b], s.maxY[b]]
          : [s.maxX[b], s.maxY[b], s.minX[b], s.minY[b]];
        out[n++] = x1;
        out[n++] = y1;
        if (s.minRow[b] !== s.maxRow[b]) {
          out[n++] = x2;
          out[n++] = y2;
        }
      }
      return out.slice(0, n);
    });
  }
}

function newSeries(capacity) {
  const s = {
    minX: new Float64Array(capacity),
    minY: new Float64Array(capacity),
    maxX: new Float64Array(capacity),
    maxY: new Float64Array(capacity),
    minRow: new Float64Array(capacity),
    maxRow: new Float64Array(capacity),
  };
  resetFrom(s, 0);
  return s;
}

function resetFrom(s, start) {
  s.minY.fill(Infinity, start);
  s.maxY.fill(-Infinity, start);
}
