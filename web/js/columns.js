// Column kinds, the chart's columns and the types this page cannot decode, from fields as
// `{name, type, kind}` (the gateway's `list` schema, or a result's schema described by the
// decoding worker). No Arrow here: the page and the worker both use it.

export const KIND = Object.freeze({ NUMBER: "number", TIME: "time", DATE: "date", OTHER: "other" });

const ID_NAME = /(^|_)(id|key|uuid)$/i;
// Types this page's apache-arrow cannot decode at all (a stream holding one fails as a whole),
// matched in the type names that the gateway lists (pyarrow's spelling, nested ones too).
const UNDECODABLE = [
  [/list_view</, "list views"],
  [/run_end_encoded</, "run-end encoded arrays"],
];

/** The kind of a type as the gateway's `list` spells it (pyarrow's `str(type)`). */
export function kindOfTypeName(name) {
  if (/^(u?int(8|16|32|64)|halffloat|float|double)$/.test(name)) return KIND.NUMBER;
  if (name.startsWith("timestamp")) return KIND.TIME;
  if (name.startsWith("date")) return KIND.DATE;
  return KIND.OTHER;
}

export const isTemporal = (kind) => kind === KIND.TIME || kind === KIND.DATE;

/** Fields as `{name, type, kind}` from the gateway's list schema (`{name, type}`). */
export function describeFields(fields) {
  return fields.map((f) => ({ name: f.name, type: f.type, kind: kindOfTypeName(f.type) }));
}

/** Why this page cannot show a column of the listed type `typeName`, or null if it can. */
export function undecodable(typeName) {
  return UNDECODABLE.find(([pattern]) => pattern.test(typeName))?.[1] ?? null;
}

/** The default x column: the first timestamp or date column, else the row index (`null`). */
export function defaultX(fields) {
  return fields.find((f) => isTemporal(f.kind))?.name ?? null;
}

/** Default series: the first two numeric columns that do not look like identifiers. */
export function defaultSeries(fields, x) {
  const numeric = fields.filter((f) => f.kind === KIND.NUMBER && f.name !== x);
  const measures = numeric.filter((f) => !ID_NAME.test(f.name));
  return (measures.length ? measures : numeric).slice(0, 2).map((f) => f.name);
}

/**
 * The chart's columns among `fields` for a choice: `x` a column name, `null` for the row
 * index or `undefined` for the default; `series` names or `null` for the default. Returns
 * `{x: field or null, series: names}` — the same on the page and in the worker.
 */
export function chooseChart(fields, { x, series }) {
  const chartable = fields.filter((f) => f.kind !== KIND.OTHER);
  const xName = x === undefined ? defaultX(chartable) : x;
  const xField = chartable.find((f) => f.name === xName) ?? null;
  const numeric = chartable.filter((f) => f.kind === KIND.NUMBER && f.name !== xField?.name);
  const names = series ?? defaultSeries(numeric, xField?.name);
  return { x: xField, series: names.filter((name) => numeric.some((f) => f.name === name)) };
}
