// The line chart: chosen numeric columns against an x column (timestamp, date, number) or
// the row index, from points the decoding worker downsampled (series.js), redrawn at most a
// few times a second.

import {
  Chart,
  Legend,
  LinearScale,
  LineController,
  LineElement,
  PointElement,
  Tooltip,
} from "chart.js";
import { isTemporal } from "./columns.js";
import { formatNumber, formatTick, formatTimestamp } from "./format.js";

Chart.register(LineController, LineElement, PointElement, LinearScale, Legend, Tooltip);

export const PALETTE = ["#2563eb", "#e11d48", "#059669", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#65a30d"];
const REDRAW_MS = 400; // at least this long between redraws while rows stream in…
const REDRAW_COST_FACTOR = 15; // …and at least 15× the last redraw's cost (≤ ~7% of the time)
const SECOND = 1e3;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;
const TIME_STEPS = [
  1, 10, 100, SECOND, 5 * SECOND, 15 * SECOND, 30 * SECOND, MINUTE, 5 * MINUTE, 15 * MINUTE,
  30 * MINUTE, HOUR, 3 * HOUR, 6 * HOUR, 12 * HOUR, DAY, 2 * DAY, 7 * DAY, 14 * DAY, 30 * DAY,
  91 * DAY, 182 * DAY, 365 * DAY, 730 * DAY, 1826 * DAY, 3652 * DAY,
];
const GRID = "rgba(15, 23, 42, 0.07)";
const TICKS = "#64748b";

export class Plot {
  constructor(canvas) {
    this.canvas = canvas;
    this.x = null; // {name, kind} or null for the row index
    this.series = [];
    this.version = 0; // points of another version (an older choice of columns) are dropped
    this.points = null; // the worker's latest points: {version, rows, monotonic, series}
    this.lastDraw = 0;
    this.drawCost = 0;
    this.timer = null;
    this.firstDrawAt = null;
    this.chart = new Chart(canvas, {
      type: "line",
      data: { datasets: [] },
      options: {
        animation: false,
        parsing: false,
        normalized: true,
        responsive: true,
        maintainAspectRatio: false,
        interaction: { mode: "nearest", axis: "x", intersect: false },
        elements: { point: { radius: 0, hoverRadius: 3 }, line: { borderWidth: 1.5 } },
        scales: {
          x: {
            type: "linear",
            bounds: "data",
            afterBuildTicks: (scale) => this.#timeTicks(scale),
            grid: { color: GRID },
            ticks: { color: TICKS, maxRotation: 0, autoSkipPadding: 16, callback: (v) => this.#tick(v) },
          },
          y: { type: "linear", grid: { color: GRID }, ticks: { color: TICKS } },
        },
        plugins: {
          legend: { position: "top", align: "end", labels: { boxWidth: 12, boxHeight: 2, color: "#334155" } },
          tooltip: {
            callbacks: {
              title: (items) => (items.length ? this.#xLabel(items[0].parsed.x) : ""),
              label: (item) => `${item.dataset.label}: ${formatNumber(item.parsed.y)}`,
            },
          },
        },
      },
    });
  }

  /** Start over with an x column (`{name, kind}` or null), series names and points' version. */
  reset(x, series, { draw = true, version = this.version } = {}) {
    this.x = x;
    this.series = series;
    this.version = version;
    this.points = null;
    this.firstDrawAt = null;
    const time = Boolean(x && isTemporal(x.kind));
    this.chart.options.scales.x.title = { display: true, text: x ? x.name : "row", color: TICKS };
    this.chart.options.scales.x.bounds = time ? "data" : "ticks"; // time: own round ticks
    this.chart.data.datasets = series.map((name, i) => ({
      label: name,
      data: [],
      borderColor: PALETTE[i % PALETTE.length],
      backgroundColor: PALETTE[i % PALETTE.length],
    }));
    if (draw) this.requestDraw(true);
  }

  /** New points from the worker: drawn soon if they are the first ones, else when due. */
  show(points) {
    if (points.version !== this.version) return;
    this.points = points;
    this.requestDraw(this.firstDrawAt == null);
  }

  /**
   * Redraw in a task of its own (never inside the caller's: a draw of thousands of points is
   * the page's biggest piece of work), once the last draw is old enough; `force`: next task.
   */
  requestDraw(force = false) {
    if (this.timer && !force) return;
    const interval = Math.max(REDRAW_MS, REDRAW_COST_FACTOR * this.drawCost);
    const wait = force ? 0 : Math.max(0, interval - (performance.now() - this.lastDraw));
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.draw(), wait);
  }

  draw() {
    const started = performance.now();
    clearTimeout(this.timer);
    this.timer = null;
    const series = this.points?.series ?? [];
    const scatter = this.points ? !this.points.monotonic : false; // unordered x: dots, not a zig-zag line
    let total = 0;
    this.chart.data.datasets.forEach((dataset, i) => {
      dataset.data = series[i] ? unpack(series[i]) : [];
      dataset.showLine = !scatter;
      dataset.pointRadius = scatter ? 1.5 : 0;
      total += dataset.data.length;
    });
    this.chart.update("none");
    this.lastDraw = performance.now();
    this.drawCost = this.lastDraw - started;
    if (total > 0 && this.firstDrawAt == null) this.firstDrawAt = this.lastDraw;
    this.canvas.dataset.points = String(total);
    this.canvas.dataset.rows = String(this.points?.rows ?? 0);
  }

  get pointCount() {
    return Number(this.canvas.dataset.points || 0);
  }

  #span() {
    const { min, max } = this.chart.scales.x ?? {};
    return Number.isFinite(min) && Number.isFinite(max) ? max - min : 0;
  }

  /** On a time axis, ticks at round times (whole hours, days…) instead of round milliseconds. */
  #timeTicks(scale) {
    if (!this.x || !isTemporal(this.x.kind)) return;
    const { min, max } = scale;
    const span = max - min;
    if (!(span > 0)) return;
    const step = TIME_STEPS.find((s) => span / s <= 8) ?? span / 8;
    const ticks = [];
    for (let t = Math.ceil(min / step) * step; t <= max; t += step) ticks.push({ value: t });
    scale.ticks = ticks;
  }

  #tick(value) {
    if (this.x && isTemporal(this.x.kind)) return formatTick(value, this.#span());
    return formatNumber(value);
  }

  #xLabel(value) {
    if (!this.x) return `row ${formatNumber(value)}`;
    if (isTemporal(this.x.kind)) return formatTimestamp(value, { dateOnly: this.x.kind === "date" });
    return `${this.x.name} ${formatNumber(value)}`;
  }
}

/** `[x0, y0, x1, y1, …]` as the `{x, y}` points Chart.js draws without parsing. */
function unpack(xy) {
  const out = new Array(xy.length / 2);
  for (let p = 0; p < out.length; p++) out[p] = { x: xy[2 * p], y: xy[2 * p + 1] };
  return out;
}
