// The dashboard's WebSocket to the gateway (DESIGN.md protocol): status, automatic
// reconnect with backoff, request/response by id, and binary frames routed to the one
// query that is running on the socket.

import { GatewayError } from "./protocol.js";

export { GatewayError };

export const STATUS = Object.freeze({
  CONNECTING: "connecting",
  OPEN: "open",
  RETRYING: "retrying",
});
const POLICY_VIOLATION = 1008; // the gateway closes sockets that never authenticate

const RETRY_DELAYS_MS = [250, 500, 1000, 2000, 4000, 8000];

export class Connection extends EventTarget {
  constructor(url) {
    super();
    this.url = url;
    this.status = STATUS.CONNECTING;
    this.socket = null;
    this.attempt = 0;
    this.retryAt = 0;
    this.nextId = 1;
    this.pending = new Map(); // id → {resolve, reject} for list requests
    this.query = null; // {id, onFrame, resolveEnd, rejectEnd, skipped}
    this.token = null; // bearer token sent as the first message, when set
    this.reconnectNow = false;
    this.tenants = null; // tenants the token may read (from `authenticated`)
  }

  /** Use `token` (or none) from the next (re)connection on; reconnects now. */
  setToken(token) {
    this.token = token || null;
    this.tenants = null;
    this.attempt = 0;
    this.reconnectNow = true;
    if (this.socket && this.socket.readyState <= WebSocket.OPEN) this.socket.close();
  }

  connect() {
    this.#setStatus(STATUS.CONNECTING);
    const socket = new WebSocket(this.url);
    socket.binaryType = "arraybuffer";
    socket.onopen = () => this.#opened();
    socket.onmessage = (event) => this.#receive(event.data);
    socket.onclose = (event) => this.#closed(socket, event);
    this.socket = socket;
  }

  get isOpen() {
    return this.socket?.readyState === WebSocket.OPEN;
  }

  /** `{"action": "list"}` → the `datasets` array. */
  list() {
    return this.#request({ action: "list" });
  }

  #request(message) {
    const id = `${message.action}-${this.nextId++}`;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.#send({ ...message, id }, reject);
    });
  }

  async #opened() {
    this.attempt = 0;
    if (this.token) {
      try {
        const reply = await this.#request({ action: "auth", token: this.token });
        this.tenants = reply.tenants;
      } catch (error) {
        this.dispatchEvent(new CustomEvent("auth-failed", { detail: error }));
      }
    }
    this.#setStatus(STATUS.OPEN);
  }

  /**
   * Start a query; returns `{id, end, skipped}`. Each binary frame (an ArrayBuffer of whole IPC
   * messages) goes to `onFrame` as it arrives; `end` resolves with the `end` message or rejects
   * with the query's error; `skipped()` counts rows a lagging live follower skipped.
   */
  startQuery(request, onFrame) {
    if (this.query) throw new GatewayError("busy", "a query is already running on this socket");
    const id = `q-${this.nextId++}`;
    let resolveEnd;
    let rejectEnd;
    const end = new Promise((resolve, reject) => {
      resolveEnd = resolve;
      rejectEnd = reject;
    });
    const query = { id, onFrame, resolveEnd, rejectEnd, skipped: 0 };
    this.query = query;
    this.#send({ action: "query", id, ...request }, (error) => this.#finishQuery(error));
    return { id, end, skipped: () => query.skipped };
  }

  cancelQuery(id) {
    if (this.query?.id === id) this.#send({ action: "cancel", id }, () => {});
  }

  #send(message, onError) {
    if (!this.isOpen) {
      onError(new GatewayError("disconnected", "not connected to the gateway"));
      return;
    }
    this.socket.send(JSON.stringify(message));
  }

  #receive(data) {
    if (typeof data !== "string") {
      this.query?.onFrame(data);
      return;
    }
    let message;
    try {
      message = JSON.parse(data);
    } catch {
      return;
    }
    const waiter = this.pending.get(message.id);
    if (message.type === "datasets" && waiter) {
      this.pending.delete(message.id);
      waiter.resolve(message.datasets);
    } else if (message.type === "authenticated" && waiter) {
      this.pending.delete(message.id);
      waiter.resolve(message);
    } else if (message.type === "skipped" && this.query?.id === message.id) {
      this.query.skipped += message.rows;
    } else if (message.type === "end" && this.query?.id === message.id) {
      this.#finishQuery(null, message);
    } else if (message.type === "error") {
      const error = new GatewayError(message.code, message.message);
      if (waiter) {
        this.pending.delete(message.id);
        waiter.reject(error);
      } else if (this.query && (message.id === this.query.id || message.id == null)) {
        this.#finishQuery(error);
      } else {
        this.dispatchEvent(new CustomEvent("error-message", { detail: error }));
      }
    }
  }

  #finishQuery(error, endMessage = null) {
    const query = this.query;
    if (!query) return;
    this.query = null;
    if (error) query.rejectEnd(error);
    else query.resolveEnd(endMessage);
  }

  #closed(socket, event) {
    if (socket !== this.socket) return;
    if (event.code === POLICY_VIOLATION) {
      const error = new GatewayError("unauthenticated", event.reason || "authentication required");
      this.dispatchEvent(new CustomEvent("auth-failed", { detail: error }));
    }
    const lost = new GatewayError("disconnected", "the connection to the gateway was lost");
    this.#finishQuery(lost);
    for (const waiter of this.pending.values()) waiter.reject(lost);
    this.pending.clear();
    const delay = this.reconnectNow ? 0 : RETRY_DELAYS_MS[Math.min(this.attempt, RETRY_DELAYS_MS.length - 1)];
    this.reconnectNow = false;
    this.attempt += 1;
    this.retryAt = Date.now() + delay;
    this.#setStatus(STATUS.RETRYING);
    setTimeout(() => this.connect(), delay);
  }

  #setStatus(status) {
    this.status = status;
    this.dispatchEvent(new CustomEvent("status", { detail: status }));
  }
}
