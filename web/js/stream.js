// Arrow IPC streams from the gateway, decoded batch by batch as bytes arrive, over either
// path: the WebSocket (`query` action, one IPC stream in binary frames) or the HTTP bulk
// path (`GET /api/stream/TENANT/DATASET`, a chunked IPC body read with fetch()).

import { RecordBatchReader } from "apache-arrow";
import { GatewayError } from "./connection.js";

export const TRANSPORT = Object.freeze({ HTTP: "http", WS: "ws" });
const EMPTY = new Uint8Array(0);

/** The HTTP bulk path's URL for a query. */
export function streamUrl({ tenant, dataset, columns, limit }) {
  const path = [tenant, ...dataset.split("/")].map(encodeURIComponent).join("/");
  const params = new URLSearchParams();
  if (columns?.length) params.set("columns", columns.join(","));
  if (limit != null) params.set("limit", String(limit));
  const query = params.toString();
  return `/api/stream/${path}${query ? `?${query}` : ""}`;
}

/**
 * Open a query. Resolves, once the schema is known, to a handle: `reader` (async iterable
 * of RecordBatch, `.schema`), `bytes()` received so far, `skipped()` rows a live follower
 * skipped, and `finish()` → `{cancelled}` after the reader is drained. Aborting `signal`
 * cancels the query at any point, even before its schema arrives. Rejects with a
 * GatewayError (`code`, `message`) when the gateway refuses the query.
 * Live (`follow`) queries need the WebSocket.
 */
export function openStream(transport, request, connection, signal = new AbortController().signal) {
  return transport === TRANSPORT.WS
    ? openWebSocket(request, connection, signal)
    : openHttp(request, connection?.token, signal);
}

async function openHttp(request, token, signal) {
  let bytes = 0;
  let response;
  try {
    const headers = token ? { Authorization: `Bearer ${token}` } : {};
    response = await fetch(streamUrl(request), { signal, cache: "no-store", headers });
  } catch (error) {
    if (signal.aborted) throw new GatewayError("cancelled", "cancelled before the first rows");
    throw new GatewayError("unavailable", `cannot reach the gateway: ${error.message}`);
  }
  if (!response.ok) throw await httpError(response);
  const counted = response.body.pipeThrough(
    new TransformStream({
      transform(chunk, controller) {
        bytes += chunk.byteLength;
        controller.enqueue(chunk);
        controller.enqueue(EMPTY); // see openWebSocket: no batch waits for the next chunk
      },
    }),
  );
  let reader;
  try {
    reader = await (await RecordBatchReader.from(counted)).open();
  } catch (error) {
    if (signal.aborted) throw new GatewayError("cancelled", "cancelled before the first rows");
    throw new GatewayError("interrupted", `the stream broke off: ${error.message}`);
  }
  return {
    reader: guard(reader, () => signal.aborted),
    bytes: () => bytes,
    skipped: () => 0,
    finish: async () => ({ cancelled: signal.aborted }),
  };
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

async function openWebSocket(request, connection, signal) {
  const { id, frames, end, skipped } = connection.startQuery(request);
  // The gateway answers a cancel with the end-of-stream and an `end` saying cancelled.
  signal.addEventListener("abort", () => connection.cancelQuery(id), { once: true });
  let bytes = 0;
  async function* counted() {
    for await (const frame of frames) {
      bytes += frame.byteLength;
      yield frame;
      // apache-arrow's byte queue serves a read that needs exactly the bytes it holds only
      // after pulling one more chunk; frames end on message boundaries, so without this
      // empty chunk each frame's last batch would wait for the next frame (forever, live).
      yield EMPTY;
    }
  }
  const reader = await (await RecordBatchReader.from(counted())).open();
  return {
    reader: guard(reader, () => false),
    bytes: () => bytes,
    skipped,
    finish: async () => {
      const message = await end;
      return { cancelled: Boolean(message?.cancelled), end: message };
    },
  };
}

/** Iterate a reader; an abort we asked for ends the iteration instead of throwing. */
function guard(reader, wasCancelled) {
  return {
    get schema() {
      return reader.schema;
    },
    async *[Symbol.asyncIterator]() {
      try {
        for await (const batch of reader) yield batch;
      } catch (error) {
        if (wasCancelled()) return;
        if (error instanceof GatewayError) throw error;
        throw new GatewayError("interrupted", `the stream broke off: ${error.message}`);
      }
    },
  };
}
