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
 * Open a query. Resolves, once the schema is known, to a handle:
 * `reader` (async iterable of RecordBatch, `.schema`), `bytes()` received so far,
 * `skipped()` rows a live follower skipped, `cancel()`, and `finish()` → `{cancelled}`
 * after the reader is drained. Live (`follow`) queries need the WebSocket.
 * Rejects with a GatewayError (`code`, `message`) when the gateway refuses the query.
 */
export function openStream(transport, request, connection) {
  return transport === TRANSPORT.WS
    ? openWebSocket(request, connection)
    : openHttp(request, connection?.token);
}

async function openHttp(request, token = null) {
  const abort = new AbortController();
  let bytes = 0;
  let cancelled = false;
  let response;
  try {
    const headers = token ? { Authorization: `Bearer ${token}` } : {};
    response = await fetch(streamUrl(request), { signal: abort.signal, cache: "no-store", headers });
  } catch (error) {
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
  const reader = await (await RecordBatchReader.from(counted)).open();
  return {
    reader: guard(reader, () => cancelled),
    bytes: () => bytes,
    skipped: () => 0,
    cancel() {
      cancelled = true;
      abort.abort();
    },
    finish: async () => ({ cancelled }),
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

async function openWebSocket(request, connection) {
  const { id, frames, end, skipped } = connection.startQuery(request);
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
    cancel: () => connection.cancelQuery(id),
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
