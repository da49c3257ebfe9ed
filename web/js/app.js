// The dashboard: wires the connection, pickers, query runs, progress, chart and table.

import { chooseChart, describeFields, KIND, isTemporal, kindOfTypeName, undecodable } from "./columns.js";
import { Connection, STATUS } from "./connection.js";
import { formatBytes, formatCount } from "./format.js";
import { PALETTE, Plot } from "./plot.js";
import { Decoder, TRANSPORT } from "./stream.js";
import { clearError, showError, showProgress } from "./status.js";
import { FirstRows } from "./table.js";
import { setupToken } from "./token.js";

const $ = (selector) => document.querySelector(selector);
const el = {
  connection: $("#connection"),
  connectionText: $("#connection-text"),
  tenant: $("#tenant"),
  dataset: $("#dataset"),
  meta: $("#dataset-meta"),
  schema: $("#schema"),
  allColumns: $("#columns-all"),
  form: $("#query-form"),
  limit: $("#limit"),
  where: $("#where"),
  follow: $("#follow"),
  followFrom: $("#follow-from"),
  httpTransport: $("input[name=transport][value=http]"),
  run: $("#run"),
  cancel: $("#cancel"),
  sqlForm: $("#sql-form"),
  sql: $("#sql"),
  sqlRun: $("#sql-run"),
  sqlCancel: $("#sql-cancel"),
  xColumn: $("#x-column"),
  series: $("#series"),
  chart: $("#chart"),
  chartEmpty: $("#chart-empty"),
  rows: $("#rows"),
  tableCaption: $("#table-caption"),
};
const STATUS_TEXT = {
  [STATUS.CONNECTING]: "Connecting…",
  [STATUS.OPEN]: "Connected",
  [STATUS.RETRYING]: "Reconnecting…",
};
const PROGRESS_MS = 100; // progress numbers refresh at most this often

const connection = new Connection(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`);
const decoder = new Decoder();
const plot = new Plot(el.chart);
const table = new FirstRows(el.rows, el.tableCaption);
const state = {
  datasets: [],
  selected: null, // tenant, dataset and schema whose pickers are shown
  source: null, // what the chart's choices were made for: the selected dataset or one SQL text
  fields: [], // fields of the selected dataset (from the list) or of the running result
  x: undefined, // chosen x column name; null = row index; undefined = default
  series: null, // chosen series names; null = default
  run: null,
  runs: 0,
  chartVersion: 0, // the chart's points come from the worker tagged with this
  retained: true, // the worker keeps the last result's batches, for re-charting
};

// ---------------------------------------------------------------- connection and lists

connection.addEventListener("status", (event) => {
  const status = event.detail;
  el.connection.dataset.status = status;
  let text = STATUS_TEXT[status];
  if (status === STATUS.RETRYING) {
    const seconds = Math.max(0, (connection.retryAt - Date.now()) / 1000);
    text = `Disconnected — retrying in ${seconds.toFixed(1)} s`;
  }
  el.connectionText.textContent = text;
  if (status === STATUS.OPEN) refreshList();
});

async function refreshList() {
  try {
    state.datasets = await connection.list();
  } catch (error) {
    showError(error);
    return;
  }
  renderTenants();
}

function renderTenants() {
  const wanted = parseHash();
  const tenants = [...new Set(state.datasets.map((d) => d.tenant))].sort();
  const current = wanted.tenant ?? el.tenant.value;
  if (current && !tenants.includes(current)) tenants.push(current);
  el.tenant.replaceChildren(...tenants.map((t) => new Option(t, t)));
  if (current) el.tenant.value = current;
  renderDatasets(wanted.dataset);
}

function renderDatasets(wanted = null) {
  const tenant = el.tenant.value;
  const names = state.datasets.filter((d) => d.tenant === tenant).map((d) => d.dataset).sort();
  const current = wanted ?? el.dataset.value;
  const options = names.map((name) => new Option(name, name));
  if (current && !names.includes(current)) options.push(new Option(`${current} (not listed)`, current));
  el.dataset.replaceChildren(...options);
  if (current) el.dataset.value = current;
  selectDataset();
}

function selectedDataset() {
  return state.datasets.find((d) => d.tenant === el.tenant.value && d.dataset === el.dataset.value);
}

function selectDataset() {
  const info = selectedDataset();
  if (el.dataset.value) {
    const path = [el.tenant.value, ...el.dataset.value.split("/")].map(encodeURIComponent).join("/");
    history.replaceState(null, "", `#/${path}`);
  }
  el.meta.replaceChildren(
    ...metaItem("Rows", info ? formatCount(info.rows) : "–"),
    ...metaItem("Size", info ? formatBytes(info.bytes) : "–"),
    ...metaItem("Columns", info ? String(info.schema.length) : "–"),
  );
  el.sql.placeholder = sqlExample(el.dataset.value, info?.schema ?? []);
  updateButtons();
  // A refreshed list (after a reconnect) keeps the choices made for the same dataset.
  const key = JSON.stringify([el.tenant.value, el.dataset.value, info?.schema ?? null]);
  if (key === state.selected) return;
  state.selected = key;
  useDatasetFields();
  renderSchema();
  renderChartControls();
}

/** The chart's columns are the selected dataset's again, with the default choices. */
function useDatasetFields() {
  const info = selectedDataset();
  state.source = state.selected;
  state.fields = info ? describeFields(info.schema) : [];
  state.x = undefined;
  state.series = null;
}

/** A dataset's name as a SQL table: quoted unless it is a plain lower-case identifier. */
function sqlTable(name) {
  return /^[a-z_][a-z0-9_]*$/.test(name) ? name : `"${name.replaceAll('"', '""')}"`;
}

function sqlExample(dataset, schema) {
  if (!dataset) return "SELECT …";
  const number = schema.find((f) => kindOfTypeName(f.type) === KIND.NUMBER);
  const text = schema.find((f) => f.type === "string" || f.type === "large_string");
  const table = sqlTable(dataset);
  if (number && text) {
    const [group, value] = [sqlTable(text.name), sqlTable(number.name)];
    return `SELECT ${group}, count(*) AS n, avg(${value}) AS mean\nFROM ${table}\nGROUP BY ${group}\nORDER BY ${group}`;
  }
  return `SELECT *\nFROM ${table}\nLIMIT 100`;
}

function updateButtons() {
  const run = state.run;
  el.run.disabled = Boolean(run) || !el.dataset.value;
  el.sqlRun.disabled = Boolean(run) || !el.tenant.value || !el.sql.value.trim();
  const cancellable = Boolean(run) && !run.abort.signal.aborted;
  el.cancel.disabled = !cancellable;
  el.sqlCancel.disabled = !cancellable;
}

function metaItem(label, value) {
  const dt = document.createElement("dt");
  dt.textContent = label;
  const dd = document.createElement("dd");
  dd.textContent = value;
  return [dt, dd];
}

function renderSchema() {
  el.schema.replaceChildren(
    ...state.fields.map((field) => {
      const li = document.createElement("li");
      const label = document.createElement("label");
      const box = document.createElement("input");
      box.type = "checkbox";
      box.checked = true;
      box.value = field.name;
      const name = document.createElement("span");
      name.className = "col-name";
      name.textContent = field.name;
      const type = document.createElement("span");
      type.className = `col-type kind-${field.kind}`;
      type.textContent = field.type;
      label.append(box, name, type);
      li.append(label);
      return li;
    }),
  );
}

function parseHash() {
  const match = /^#\/([^/]+)\/(.+)$/.exec(location.hash);
  if (!match) return {};
  return { tenant: decodeURIComponent(match[1]), dataset: match[2].split("/").map(decodeURIComponent).join("/") };
}

// ---------------------------------------------------------------- chart controls

function chartFields() {
  return state.fields.filter((f) => f.kind !== KIND.OTHER);
}

/** The chart's columns as chosen (undefined/null = the defaults), for the worker. */
function chartChoice() {
  return { x: state.x, series: state.series, version: state.chartVersion };
}

function chosenX() {
  return chooseChart(state.fields, chartChoice()).x;
}

function chosenSeries() {
  return chooseChart(state.fields, chartChoice()).series;
}

function renderChartControls() {
  const fields = chartFields();
  const x = chosenX();
  const xOptions = [new Option("row index", "")];
  for (const f of fields) xOptions.push(new Option(`${f.name}${isTemporal(f.kind) ? " (time)" : ""}`, f.name));
  el.xColumn.replaceChildren(...xOptions);
  el.xColumn.value = x?.name ?? "";
  const series = chosenSeries();
  const numeric = fields.filter((f) => f.kind === KIND.NUMBER && f.name !== x?.name);
  el.series.replaceChildren(
    ...numeric.map((f) => {
      const label = document.createElement("label");
      label.className = "chip";
      const box = document.createElement("input");
      box.type = "checkbox";
      box.value = f.name;
      box.checked = series.includes(f.name);
      const index = series.indexOf(f.name);
      if (index >= 0) label.style.setProperty("--chip-color", PALETTE[index % PALETTE.length]);
      const text = document.createElement("span");
      text.textContent = f.name;
      label.append(box, text);
      return label;
    }),
  );
  if (!numeric.length && fields.length) el.series.textContent = "no numeric columns";
  updateChartEmpty();
}

/** Chart other columns: the worker charts the batches it kept and sends the points. */
function replot() {
  state.chartVersion += 1;
  plot.reset(chosenX(), chosenSeries(), { version: state.chartVersion });
  decoder.chart(chartChoice());
  updateChartEmpty();
}

function updateChartEmpty() {
  const series = chosenSeries();
  let text = "";
  if (!series.length) text = "No numeric columns to chart";
  else if (!plot.pointCount && !state.retained) text = "Too much data to keep for re-charting: run the query again";
  else if (!plot.pointCount) text = state.run ? "Waiting for the first rows…" : "Run a query to draw the chart";
  el.chartEmpty.textContent = text;
  el.chartEmpty.hidden = !text;
}

el.xColumn.addEventListener("change", () => {
  state.x = el.xColumn.value || null;
  renderChartControls();
  replot();
});

el.series.addEventListener("change", () => {
  state.series = [...el.series.querySelectorAll("input:checked")].map((box) => box.value);
  renderChartControls();
  replot();
});

// ---------------------------------------------------------------- running a query

function readRequest() {
  const boxes = [...el.schema.querySelectorAll("input[type=checkbox]")];
  const omitted = new Set(omittedColumns().map((f) => f.name));
  const chosen = boxes.filter((b) => b.checked && !omitted.has(b.value)).map((b) => b.value);
  const request = { tenant: el.tenant.value, dataset: el.dataset.value };
  if (omitted.size || (chosen.length && chosen.length < boxes.length)) request.columns = chosen;
  if (el.limit.value !== "") request.limit = Number(el.limit.value);
  const where = el.where.value.trim();
  if (where) request.where = where; // a SQL condition, run at the connector
  if (el.follow.checked) {
    // Live rows come over the WebSocket; a follower that falls behind skips ahead.
    Object.assign(request, { follow: true, from: el.followFrom.value, on_lag: "skip" });
  }
  return request;
}

/** Chosen columns of types this page cannot decode: left out of the query, named in the table. */
function omittedColumns() {
  const chosen = new Set(
    [...el.schema.querySelectorAll("input[type=checkbox]")].filter((b) => b.checked).map((b) => b.value),
  );
  return (selectedDataset()?.schema ?? [])
    .filter((f) => chosen.has(f.name) && undecodable(f.type))
    .map((f) => ({ name: f.name, type: f.type, why: undecodable(f.type) }));
}

function expectedRows(request) {
  if (request.follow || request.where || request.sql != null) return null; // not known ahead
  const info = selectedDataset();
  const rows = info && info.rows >= 0 ? info.rows : null;
  if (request.limit != null) return rows == null ? request.limit : Math.min(rows, request.limit);
  return rows;
}

/** A SQL query for the selected tenant: `{tenant, sql}` (no columns, limit or follow: say it in the SQL). */
function readSqlRequest() {
  return { tenant: el.tenant.value, sql: el.sql.value.trim() };
}

// What the error area adds to the server's message, by error code, for a filter or SQL.
const FILTER_HINTS = {
  invalid: "Check the filter: a SQL condition on the dataset's columns, e.g. temperature > 25 AND sensor = 'line-1'.",
};
const SQL_HINTS = {
  invalid: "Check the SQL: one SELECT (or WITH … SELECT) over this tenant's datasets.",
  not_found: 'The tables are this tenant\'s datasets; quote a name with "/": "archive/2025/q1_sales".',
};

/** Run the selected dataset's query (`sql`: false) or the SQL box's query (`sql`: true). */
async function runQuery({ sql = false } = {}) {
  if (state.run) return;
  if (sql && !readSqlRequest().sql) return;
  // The chart's choices belong to what they were made for: a new source starts from the
  // defaults, picked from the result's own schema once it arrives.
  const source = sql ? JSON.stringify(["sql", el.tenant.value, readSqlRequest().sql]) : state.selected;
  if (source !== state.source) {
    if (sql) Object.assign(state, { source, fields: [], x: undefined, series: null });
    else useDatasetFields();
  }
  const request = sql ? readSqlRequest() : readRequest();
  const omitted = sql ? [] : omittedColumns();
  const transport = request.follow ? TRANSPORT.WS : el.form.elements.transport.value;
  const run = {
    id: ++state.runs,
    kind: sql ? "sql" : "dataset",
    transport,
    request,
    hints: sql ? SQL_HINTS : request.where ? FILTER_HINTS : {},
    // Type names as the gateway lists them for the dataset's columns (none for SQL).
    listed: new Map(sql ? [] : (selectedDataset()?.schema ?? []).map((f) => [f.name, f.type])),
    title: sql ? "SQL result" : request.where ? "First rows (filtered)" : null,
    live: Boolean(request.follow),
    skipped: 0,
    expected: expectedRows(request),
    startedAt: performance.now(),
    rows: 0,
    bytes: 0,
    batches: 0,
    firstBatchMs: null,
    firstChartMs: null,
    seconds: 0,
    state: "connecting",
    abort: new AbortController(),
    progressAt: null,
    progressTimer: null,
  };
  state.run = run;
  state.retained = true;
  state.chartVersion += 1;
  // Send the request first; clear the views while its first bytes are on the way.
  const finished = decoder.run(transport, request, {
    connection,
    chart: chartChoice(),
    latest: run.live,
    signal: run.abort.signal,
    onSchema: (fields) => showSchema(run, fields, omitted),
    onUpdate: (update) => showUpdate(run, update),
  });
  clearError();
  updateButtons();
  table.reset();
  plot.reset(chosenX(), chosenSeries(), { version: state.chartVersion });
  showProgress(run);
  try {
    const outcome = await finished;
    Object.assign(run, { rows: outcome.rows, batches: outcome.batches, bytes: outcome.bytes });
    run.state = outcome.cancelled ? "cancelled" : "done";
  } catch (error) {
    run.state = "error";
    showError(error, run.hints);
  } finally {
    clearTimeout(run.progressTimer);
    run.skipped = decoder.skipped();
    run.seconds = (performance.now() - run.startedAt) / 1000;
    await nextTask(); // the last points are drawn in a task of their own, then published
    plot.draw();
    noteFirstChart(run);
    showProgress(run);
    state.run = null;
    updateChartEmpty(); // not "waiting" any more, whatever the outcome
    updateButtons();
    publish(run);
  }
}

/** The result's fields are known: the table's header, the chart's columns among them. */
function showSchema(run, fields, omitted) {
  if (state.run !== run) return;
  run.state = run.abort.signal.aborted ? "cancelling" : "streaming";
  if (fields.length) state.fields = fields; // the result's own schema (columns chosen)
  renderChartControls();
  table.reset(fields, run.listed, { latest: run.live, omitted, title: run.title });
  plot.reset(chosenX(), chosenSeries(), { draw: false });
  showProgress(run);
}

/** Counts, chart points and table rows from the worker (points also after a re-chart). */
function showUpdate(run, update) {
  state.retained = update.retained;
  if (update.table) table.show(update.table);
  if (update.points) {
    plot.show(update.points);
    updateChartEmpty();
  }
  if (state.run !== run) return;
  if (run.firstBatchMs == null && update.firstBatchAt != null) {
    run.firstBatchMs = update.firstBatchAt - (performance.timeOrigin + run.startedAt);
  }
  Object.assign(run, { rows: update.rows, batches: update.batches, bytes: update.bytes });
  noteFirstChart(run);
  updateProgressSoon(run);
}

/** Refresh the progress numbers now if they are old enough, else once a little later. */
function updateProgressSoon(run) {
  if (run.progressTimer) return;
  const wait = PROGRESS_MS - (performance.now() - (run.progressAt ?? 0));
  const update = () => {
    run.progressTimer = null;
    if (state.run !== run) return;
    run.progressAt = performance.now();
    run.skipped = decoder.skipped();
    run.seconds = (run.progressAt - run.startedAt) / 1000;
    showProgress(run);
  };
  if (wait <= 0) update();
  else run.progressTimer = setTimeout(update, wait);
}

function noteFirstChart(run) {
  if (run.firstChartMs == null && plot.firstDrawAt != null) {
    run.firstChartMs = plot.firstDrawAt - run.startedAt;
  }
}

function nextTask() {
  return new Promise((resolve) => setTimeout(resolve, 0));
}

function cancelQuery() {
  const run = state.run;
  if (!run || run.abort.signal.aborted) return;
  run.state = "cancelling";
  showProgress(run);
  run.abort.abort();
  updateButtons();
}

/** Numbers of the last run, for people (the console) and for benchmarks. */
function publish(run) {
  const summary = {
    kind: run.kind,
    transport: run.transport,
    state: run.state,
    rows: run.rows,
    bytes: run.bytes,
    batches: run.batches,
    seconds: run.seconds,
    mbPerSecond: run.seconds > 0 ? run.bytes / 1e6 / run.seconds : 0,
    firstBatchMs: run.firstBatchMs,
    firstChartMs: run.firstChartMs,
    chartPoints: plot.pointCount,
  };
  window.streamkit.lastRun = summary;
  window.dispatchEvent(new CustomEvent("streamkit:run", { detail: summary }));
}

// ---------------------------------------------------------------- wiring

el.tenant.addEventListener("change", () => renderDatasets());
el.dataset.addEventListener("change", () => selectDataset());
el.allColumns.addEventListener("click", () => {
  const boxes = [...el.schema.querySelectorAll("input[type=checkbox]")];
  const check = !boxes.every((b) => b.checked);
  for (const box of boxes) box.checked = check;
});
el.form.addEventListener("submit", (event) => {
  event.preventDefault();
  runQuery();
});
el.cancel.addEventListener("click", cancelQuery);
el.sqlForm.addEventListener("submit", (event) => {
  event.preventDefault();
  runQuery({ sql: true });
});
el.sql.addEventListener("input", updateButtons);
el.sql.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
    event.preventDefault();
    el.sqlForm.requestSubmit();
  }
});
el.sqlCancel.addEventListener("click", cancelQuery);
el.follow.addEventListener("change", () => {
  const live = el.follow.checked;
  el.followFrom.disabled = !live;
  el.httpTransport.disabled = live;
  if (live) el.form.elements.transport.value = TRANSPORT.WS;
});
window.addEventListener("hashchange", () => renderTenants());
setInterval(() => {
  if (connection.status === STATUS.RETRYING) {
    connection.dispatchEvent(new CustomEvent("status", { detail: STATUS.RETRYING }));
  }
}, 250);

window.streamkit = { lastRun: null, connection, decoder, TRANSPORT, plot };
setupToken(connection, { onChange: clearError, onError: showError });
connection.connect();
showProgress({ state: "idle", rows: 0, bytes: 0, batches: 0, seconds: 0, expected: null });
