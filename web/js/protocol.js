// What the page and its decoding worker (decode_worker.js) say to each other, the transports,
// the HTTP bulk path's URL and the error type of every surface. Used on both sides.

export const TRANSPORT = Object.freeze({ HTTP: "http", WS: "ws" });

/** Page → worker. Every message but `chart` names its run (`run`: a number). */
export const TO_WORKER = Object.freeze({
  START: "start", // {run, transport, url?, token?, chart, latest, views}
  FRAME: "frame", // {run, frame: ArrayBuffer (transferred)}: one WebSocket binary frame
  INPUT_END: "input-end", // {run}: the WebSocket query ended, no more frames
  CANCEL: "cancel", // {run}: stop (aborts the HTTP fetch, drops further frames)
  CHART: "chart", // {run, chart}: chart other columns, from the kept batches
});

/** Worker → page, each with its `run`. */
export const FROM_WORKER = Object.freeze({
  SCHEMA: "schema", // {fields: [{name, type, kind}]}
  UPDATE: "update", // {rows, batches, bytes, firstBatchAt, retained, points?, table?}
  DONE: "done", // {cancelled, rows, batches, bytes}
  ERROR: "error", // {code, message, status}
  BROKEN: "broken", // {message}: the worker could not load (run: null)
});

/** Rows the table shows: the first ones of a result, or the latest ones of a live stream. */
export const TABLE_ROWS = 100;

export class GatewayError extends Error {
  constructor(code, message, status = null) {
    super(message || code);
    this.code = code;
    this.status = status;
  }
}

/** The HTTP bulk path's URL for a query. */
export function streamUrl({ tenant, dataset, columns, limit }) {
  const path = [tenant, ...dataset.split("/")].map(encodeURIComponent).join("/");
  const params = new URLSearchParams();
  if (columns?.length) params.set("columns", columns.join(","));
  if (limit != null) params.set("limit", String(limit));
  const query = params.toString();
  return `/api/stream/${path}${query ? `?${query}` : ""}`;
}
