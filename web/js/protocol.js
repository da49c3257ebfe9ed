// What the page and its decoding worker (decode_worker.js) say to each other, the transports,
// the HTTP bulk path's URL and the error type of every surface. Used on both sides.

export const TRANSPORT = Object.freeze({ HTTP: "http", WS: "ws" });

/** Page → worker. Every message but `chart` names its run (`run`: a number). */
export const TO_WORKER = Object.freeze({
  START: "start", // {run, transport, url?, body?, token?, chart, latest, views}
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

/** The HTTP bulk path's URL for a dataset query (`where`: a SQL filter, run at the connector). */
export function streamUrl({ tenant, dataset, columns, limit, where }) {
  const path = [tenant, ...dataset.split("/")].map(encodeURIComponent).join("/");
  const params = new URLSearchParams();
  if (columns?.length) params.set("columns", columns.join(","));
  if (limit != null) params.set("limit", String(limit));
  if (where) params.set("where", where);
  const query = params.toString();
  return `/api/stream/${path}${query ? `?${query}` : ""}`;
}

/** SQL whose `GET /api/sql/TENANT?q=` URL would be longer than this goes as a POST body. */
export const MAX_GET_URL = 4000;

/**
 * The HTTP request of a query: `{url}` for a GET, `{url, body}` for a POST. A dataset query
 * reads `/api/stream/…`; a `sql` query (`{tenant, sql}`) reads `/api/sql/TENANT`.
 */
export function httpRequest(request) {
  if (request.sql == null) return { url: streamUrl(request), body: null };
  const base = `/api/sql/${encodeURIComponent(request.tenant)}`;
  const url = `${base}?${new URLSearchParams({ q: request.sql })}`;
  return url.length <= MAX_GET_URL ? { url, body: null } : { url: base, body: request.sql };
}
