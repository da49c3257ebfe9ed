// The page's half of running a query: the Arrow stream is decoded by a worker
// (decode_worker.js), off the main thread. Over HTTP the worker fetches
// `/api/stream/TENANT/DATASET` (or `/api/sql/TENANT` for SQL) itself, so the bytes never touch the page; over the WebSocket
// the query runs on the page's socket (shared with list, auth and cancel) and each binary
// frame is transferred to the worker, not copied. Back come small results: the result's
// fields, counts, downsampled chart points and the table's rows as text.

import { FROM_WORKER, GatewayError, TO_WORKER, TRANSPORT, httpRequest, streamUrl } from "./protocol.js";

export { TRANSPORT, streamUrl };
const WORKER_URL = "/js/decode_worker.js";

export class Decoder {
  constructor(url = WORKER_URL) {
    this.worker = new Worker(url); // classic: see decode_worker.js
    this.worker.onmessage = (event) => this.#receive(event.data);
    this.worker.onerror = (event) => this.#broken(event.message || "it failed to load");
    this.runs = 0;
    this.last = null; // the last query: {id, onSchema, onUpdate, resolve, reject}
    this.running = false;
    this.failure = null;
    this.skipped = () => 0; // rows the running live query skipped (WebSocket `skipped` messages)
  }

  /**
   * Run one query (one at a time). Options: `connection` (the socket; its token also goes on
   * HTTP requests), `chart` `{x, series, version}` (the columns to chart, see chooseChart;
   * points come back tagged with `version`), `latest` (keep the latest rows, for live
   * streams), `views: false` (decode and count only), `signal` (aborting it cancels),
   * `onSchema(fields)` once the result's fields are known, `onUpdate(update)` as results
   * arrive (also after the end, for re-charting). Resolves at the end with `{cancelled, rows,
   * batches, bytes}`; rejects with a GatewayError. `skipped()` counts the rows a live query
   * skipped so far.
   */
  async run(transport, request, options) {
    const { connection, chart = {}, latest = false, views = true, signal, onSchema, onUpdate } = options;
    if (this.failure) throw this.failure;
    if (this.running) throw new GatewayError("busy", "a query is already running");
    const id = ++this.runs;
    const post = (message, transfer = []) => this.worker.postMessage({ ...message, run: id }, transfer);
    const done = new Promise((resolve, reject) => {
      this.last = { id, onSchema, onUpdate, resolve, reject };
    });
    this.running = true;
    this.skipped = () => 0;
    try {
      const http = transport === TRANSPORT.HTTP;
      const token = connection?.token ?? null;
      const { url = null, body = null } = http ? httpRequest(request) : {};
      post({ type: TO_WORKER.START, transport, url, body, token, chart, latest, views });
      if (!http) return await this.#overWebSocket(request, connection, signal, done, post);
      signal?.addEventListener("abort", () => post({ type: TO_WORKER.CANCEL }), { once: true });
      return await done;
    } finally {
      this.running = false;
    }
  }

  /** Chart other columns of the last query (from the batches the worker kept). */
  chart(choice) {
    if (this.last) this.worker.postMessage({ type: TO_WORKER.CHART, run: this.last.id, chart: choice });
  }

  async #overWebSocket(request, connection, signal, done, post) {
    let bytes = 0;
    let cancelled = false;
    const query = connection.startQuery(request, (frame) => {
      bytes += frame.byteLength;
      if (!cancelled) post({ type: TO_WORKER.FRAME, frame }, [frame]);
    });
    this.skipped = query.skipped;
    // The gateway answers a cancel with the end-of-stream and an `end` saying cancelled.
    signal?.addEventListener(
      "abort",
      () => {
        cancelled = true;
        connection.cancelQuery(query.id);
        post({ type: TO_WORKER.CANCEL });
      },
      { once: true },
    );
    const ended = query.end.then(
      (end) => {
        post({ type: TO_WORKER.INPUT_END });
        return end;
      },
      (error) => {
        post({ type: TO_WORKER.CANCEL });
        throw error;
      },
    );
    // A stream the worker cannot decode: stop it on the gateway too, the socket is shared.
    const decoded = done.catch((error) => {
      connection.cancelQuery(query.id);
      throw error;
    });
    const [outcome, end] = await Promise.all([decoded, ended]);
    return { ...outcome, bytes, cancelled: outcome.cancelled || Boolean(end?.cancelled), end };
  }

  #receive(message) {
    if (message.type === FROM_WORKER.BROKEN) {
      this.#broken(message.message);
      return;
    }
    const run = this.last?.id === message.run ? this.last : null;
    if (!run) return;
    switch (message.type) {
      case FROM_WORKER.SCHEMA:
        run.onSchema?.(message.fields);
        break;
      case FROM_WORKER.UPDATE:
        run.onUpdate?.(message);
        break;
      case FROM_WORKER.DONE:
        run.resolve(message);
        break;
      case FROM_WORKER.ERROR:
        run.reject(new GatewayError(message.code, message.message, message.status));
        break;
    }
  }

  #broken(reason) {
    this.failure = new GatewayError("internal", `the dashboard's decoding worker failed: ${reason}`);
    this.last?.reject(this.failure);
  }
}
