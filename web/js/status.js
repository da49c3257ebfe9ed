// The status views: query progress (rows, MB, MB/s, batches, time) and gateway errors.

import { GatewayError } from "./connection.js";
import { formatCount, formatMegabytes, formatRate, formatSeconds } from "./format.js";

const $ = (selector) => document.querySelector(selector);
const el = {
  error: $("#error"),
  errorTitle: $("#error-title"),
  errorCode: $("#error-code"),
  errorMessage: $("#error-message"),
  errorHint: $("#error-hint"),
  progress: $("#progress"),
  progressBar: $("#progress-bar"),
  stateLabel: $("#state-label"),
  statRows: $("#stat-rows"),
  statBytes: $("#stat-bytes"),
  statRate: $("#stat-rate"),
  statBatches: $("#stat-batches"),
  statTime: $("#stat-time"),
};

const ERROR_TEXT = {
  not_found: ["Not found", "No such tenant or dataset. Pick one from the list, or check the name."],
  invalid: ["Invalid query", "Check the column names and the limit."],
  unavailable: ["Connector unavailable", "The tenant's connector is down or unreachable. Try again shortly."],
  unauthenticated: ["Token needed", "Enter a token for this tenant (Token, top right)."],
  unauthorized: ["Not allowed", "Your token does not give access to this tenant."],
  rate_limited: ["Rate limited", "Too many requests; wait a moment and run again."],
  busy: ["Busy", "A query is already running on this connection."],
  lagging: ["Fell behind", "The live stream outran this page."],
  disconnected: ["Connection lost", "The gateway went away; the page reconnects on its own."],
  interrupted: ["Stream interrupted", "The stream ended early; the rows shown are incomplete."],
  internal: ["Gateway error", "The gateway failed unexpectedly; see its log."],
};
const STATE_TEXT = {
  idle: "Ready",
  connecting: "Starting…",
  streaming: "Streaming",
  cancelling: "Cancelling…",
  done: "Done",
  cancelled: "Cancelled",
  error: "Failed",
};

/** Show a run's numbers; `data-state` on #progress and `data-value` on #stat-rows for scripts. */
export function showProgress(run) {
  el.progress.dataset.state = run.state;
  let label = STATE_TEXT[run.state] ?? run.state;
  // A followed stream starts with its schema; until a row exists it is still waiting.
  const waiting = run.state === "connecting" || (run.state === "streaming" && run.rows === 0);
  if (run.live && run.state === "streaming") label = "Live";
  if (run.live && waiting) label = "Waiting for rows…";
  if (run.skipped) label += ` · ${formatCount(run.skipped)} skipped`;
  el.stateLabel.textContent = label;
  el.statRows.textContent = formatCount(run.rows);
  el.statRows.dataset.value = String(run.rows);
  el.statBytes.textContent = formatMegabytes(run.bytes);
  el.statRate.textContent = formatRate(run.bytes, run.seconds);
  el.statBatches.textContent = formatCount(run.batches);
  el.statTime.textContent = formatSeconds(run.seconds);
  const fraction = run.state === "done" ? 1 : run.expected ? Math.min(1, run.rows / run.expected) : 0;
  el.progressBar.style.transform = `scaleX(${fraction})`;
  el.progressBar.parentElement.classList.toggle("indeterminate", run.state === "streaming" && !run.expected);
}

/** Show an error (a GatewayError has a `code`); `hints` may say more per code. Returns the code. */
export function showError(error, hints = {}) {
  const code = error instanceof GatewayError ? error.code : "internal";
  const [title, generic] = ERROR_TEXT[code] ?? ["Error", ""];
  const hint = hints[code] ?? generic;
  el.errorTitle.textContent = title;
  el.errorCode.textContent = code;
  el.errorMessage.textContent = error.message;
  el.errorHint.textContent = hint;
  el.error.dataset.code = code;
  el.error.hidden = false;
  window.dispatchEvent(new CustomEvent("streamkit:error", { detail: { code, error } }));
  return code;
}

export function clearError() {
  el.error.hidden = true;
  delete el.error.dataset.code;
}

$("#error-close").addEventListener("click", clearError);
