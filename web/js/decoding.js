// One query's Arrow IPC stream, decoded batch by batch in the decoding worker: its bytes come
// from the worker's own fetch() (HTTP) or from the page's WebSocket frames, and what goes back
// to the page is small: the result's fields, counts, downsampled chart points, the table's rows
// as text. The last run stays here after it ends, with its batches, for re-charting.

import { RecordBatchReader } from "./arrow.js";
import { FROM_WORKER, GatewayError, TO_WORKER, TRANSPORT } from "./protocol.js";
import { RowText } from "./rows.js";
import { ChartSeries } from "./series.js";
import { describeSchema } from "./vectors.js";

const UPDATE_MS = 50; // counts go to the page at most this often…
const POINTS_MS = 200; // …chart points at most this often (the page redraws ≥ 400 ms apart)
const SLICE_MS = 20; // decode this long, then take the page's messages (cancel, re-chart)
const EMPTY = new Uint8Array(0);

let current = null;

/** Handle one message from the page (TO_WORKER). */
export function receive(message) {
  const run = current?.id === message.run ? current : null;
  switch (message.type) {
    case TO_WORKER.START:
      current?.cancel();
      current = new Run(message);
      current.start();
      break;
    case TO_WORKER.FRAME:
      run?.input?.push(new Uint8Array(message.frame));
      break;
    case TO_WORKER.INPUT_END:
      run?.input?.finish();
      break;
    case TO_WORKER.CANCEL:
      run?.cancel();
      break;
    case TO_WORKER.CHART:
      run?.rechart(message.chart);
      break;
  }
}

class Run {
  constructor({ run, transport, url, body, token, chart, latest, views }) {
    this.id = run;
    this.url = url;
    this.body = body ?? null; // a POST's body (long SQL), else a GET
    this.token = token;
    this.input = transport === TRANSPORT.WS ? new ChunkQueue() : null;
    this.abort = new AbortController();
    this.stopped = false; // cancelled (or replaced by the next run)
    this.finished = false;
    this.rows = 0;
    this.batches = 0;
    this.bytes = 0;
    this.firstBatchAt = null; // epoch ms (performance.timeOrigin based), comparable across threads
    this.chart = views ? new ChartSeries(chart) : null;
    this.table = views ? new RowText(latest) : null;
    this.changed = false; // something the page has not been told yet
    this.updateAt = -Infinity;
    this.pointsAt = null;
    this.timer = null;
  }

  async start() {
    this.timer = setInterval(() => this.changed && this.#flush(), UPDATE_MS);
    try {
      const chunks = this.input ?? (await this.#fetch());
      if (chunks) await this.#decode(chunks);
      this.#finish({ type: FROM_WORKER.DONE, cancelled: this.stopped });
    } catch (error) {
      if (this.stopped) {
        this.#finish({ type: FROM_WORKER.DONE, cancelled: true });
      } else {
        const failure = error instanceof GatewayError
          ? error
          : new GatewayError("interrupted", `the stream broke off: ${error.message}`);
        this.#finish({ type: FROM_WORKER.ERROR, code: failure.code, message: failure.message, status: failure.status });
      }
    }
  }

  cancel() {
    if (this.finished || this.stopped) return;
    this.stopped = true;
    this.abort.abort();
    this.input?.finish({ drop: true });
  }

  rechart(choice) {
    if (!this.chart) return;
    this.chart.rechart(choice);
    this.pointsAt = null; // the page waits for these points: send them now
    this.#flush();
  }

  /** The response body as an async iterable of chunks, or null when cancelled first. */
  async #fetch() {
    const headers = this.token ? { Authorization: `Bearer ${this.token}` } : {};
    const init = { signal: this.abort.signal, cache: "no-store", headers };
    if (this.body != null) {
      Object.assign(init, { method: "POST", body: this.body });
      headers["Content-Type"] = "text/plain; charset=utf-8";
    }
    let response;
    try {
      response = await fetch(this.url, init);
    } catch (error) {
      if (this.stopped) return null;
      throw new GatewayError("unavailable", `cannot reach the gateway: ${error.message}`);
    }
    if (!response.ok) throw await httpError(response);
    return bodyChunks(response.body);
  }

  async #decode(chunks) {
    const reader = await (await RecordBatchReader.from(this.#counted(chunks))).open();
    if (this.stopped) return;
    const fields = describeSchema(reader.schema);
    this.chart?.setFields(fields);
    this.table?.setSchema(reader.schema);
    this.#post({ type: FROM_WORKER.SCHEMA, fields });
    let sliceStart = performance.now();
    for await (const batch of reader) {
      if (this.stopped) return;
      this.#add(batch);
      if (performance.now() - sliceStart > SLICE_MS) {
        await yieldToMessages();
        sliceStart = performance.now();
      }
    }
  }

  async *#counted(chunks) {
    for await (const chunk of chunks) {
      this.bytes += chunk.byteLength;
      yield chunk;
      // apache-arrow's byte queue serves a read that needs exactly the bytes it holds only
      // after pulling one more chunk; chunks (and frames) end on message boundaries, so without
      // this empty chunk each one's last batch would wait for the next (forever, live).
      yield EMPTY;
    }
  }

  #add(batch) {
    if (this.firstBatchAt == null) this.firstBatchAt = performance.timeOrigin + performance.now();
    this.batches += 1;
    this.rows += batch.numRows;
    this.chart?.add(batch, this.bytes);
    this.table?.add(batch);
    this.changed = true;
    if (this.batches === 1 || performance.now() - this.updateAt >= UPDATE_MS) this.#flush();
  }

  /** Tell the page the counts, and the points and rows that are due. */
  #flush(final = false) {
    const now = performance.now();
    const message = {
      type: FROM_WORKER.UPDATE,
      rows: this.rows,
      batches: this.batches,
      bytes: this.bytes,
      firstBatchAt: this.firstBatchAt,
      retained: this.chart?.retained ?? false,
    };
    const transfer = [];
    if (this.chart?.dirty && (final || this.pointsAt == null || now - this.pointsAt >= POINTS_MS)) {
      message.points = this.chart.take();
      transfer.push(...message.points.series.map((xy) => xy.buffer));
      this.pointsAt = now;
    }
    const table = this.table?.take(now, final);
    if (table) message.table = table;
    this.updateAt = now;
    this.changed = Boolean(this.chart?.dirty || this.table?.waiting);
    this.#post(message, transfer);
  }

  #finish(message) {
    clearInterval(this.timer);
    this.#flush(true);
    this.finished = true;
    this.#post({ ...message, rows: this.rows, batches: this.batches, bytes: this.bytes });
  }

  #post(message, transfer = []) {
    self.postMessage({ ...message, run: this.id }, transfer);
  }
}

/** WebSocket frames of one run, as an async iterable, ended by `finish()`. */
class ChunkQueue {
  constructor() {
    this.chunks = [];
    this.waiting = null;
    this.finished = false;
  }

  push(chunk) {
    if (this.finished) return;
    if (this.waiting) {
      const resolve = this.waiting;
      this.waiting = null;
      resolve({ value: chunk, done: false });
    } else {
      this.chunks.push(chunk);
    }
  }

  /** No more chunks; `drop` also forgets those not read yet (cancel). */
  finish({ drop = false } = {}) {
    this.finished = true;
    if (drop) this.chunks = [];
    this.waiting?.({ value: undefined, done: true });
    this.waiting = null;
  }

  [Symbol.asyncIterator]() {
    return {
      next: () => {
        if (this.chunks.length) return Promise.resolve({ value: this.chunks.shift(), done: false });
        if (this.finished) return Promise.resolve({ value: undefined, done: true });
        return new Promise((resolve) => {
          this.waiting = resolve;
        });
      },
      return: () => Promise.resolve({ value: undefined, done: true }),
    };
  }
}

async function* bodyChunks(body) {
  const reader = body.getReader();
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      yield value;
    }
  } finally {
    reader.releaseLock();
  }
}

async function httpError(response) {
  try {
    const body = await response.json();
    if (body?.code) return new GatewayError(body.code, body.message, response.status);
  } catch {
    // not a JSON error body: fall through
  }
  return new GatewayError(`http_${response.status}`, `HTTP ${response.status} ${response.statusText}`);
}

// A task boundary that lets messages the page has already sent (cancel, re-chart) run first:
// they are posted messages too, queued before this one. (setTimeout would be clamped to 4 ms
// when nested; scheduler.yield() resumes ahead of other tasks.)
const channel = new MessageChannel();
const resumes = [];
channel.port1.onmessage = () => resumes.shift()?.();

function yieldToMessages() {
  return new Promise((resolve) => {
    resumes.push(resolve);
    channel.port2.postMessage(null);
  });
}
