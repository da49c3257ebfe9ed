// The dashboard's decoding worker. A classic script, not a module worker: the only
// apache-arrow build that a worker can load without a bundler is the package's self-contained
// classic script (see arrow.js), and only classic workers have importScripts. Everything after
// it is ES modules (decoding.js). Messages that arrive while those load wait in `early`.

const ARROW = "/node_modules/apache-arrow/Arrow.esnext.min.js";
const BROKEN = "broken"; // FROM_WORKER.BROKEN of protocol.js (a classic script cannot import it)

const early = [];
self.onmessage = (event) => early.push(event.data);

function broken(error) {
  self.postMessage({ type: BROKEN, run: null, message: `the decoding worker did not load: ${error.message}` });
}

try {
  importScripts(ARROW);
  import("./decoding.js").then(({ receive }) => {
    self.onmessage = (event) => receive(event.data);
    for (const message of early.splice(0)) receive(message);
  }, broken);
} catch (error) {
  broken(error);
}
