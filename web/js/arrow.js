// apache-arrow inside the decoding worker. Import maps do not apply in workers, and the
// package's ES modules import their dependencies by bare name ("flatbuffers", "tslib"), so a
// worker cannot load them without a bundler. The package also ships one self-contained browser
// build (Arrow.esnext.min.js, a classic script): decode_worker.js loads it with importScripts,
// which sets `globalThis.Arrow`, before it imports any module that imports this one.

const Arrow = globalThis.Arrow;
if (!Arrow) throw new Error("apache-arrow is not loaded: this module runs in decode_worker.js");

export const { DataType, DateUnit, RecordBatchReader, TimeUnit, Type, UnionMode, Vector, makeVector } = Arrow;
