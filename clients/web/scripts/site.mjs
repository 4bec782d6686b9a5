// Assemble a folder that any static file server can serve: the demo page, the module, the shared
// tokenizer, onnxruntime-web's wasm files and (optionally) a bundle, in the layout the page expects.
//
//   node clients/web/scripts/site.mjs OUT_DIR [BUNDLE_DIR]     (after npm ci --prefix clients/web)
//
//   OUT_DIR/web/index.html, rnnonnx-web.js        the page and the module
//   OUT_DIR/web/node_modules/onnxruntime-web/dist/ ort.wasm.min.mjs and its .mjs/.wasm runtime
//   OUT_DIR/node/tokenizer.mjs, unicode-tables.mjs, predictions.mjs  shared with the Node.js client
//   OUT_DIR/web/bundle/                            the bundle's manifest, labels, tokenizer and ids graph
//
// The folder is written next to OUT_DIR under a temporary name and renamed at the end.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const WEB = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const NODE = path.join(path.dirname(WEB), 'node');
const ORT_DIST = path.join('node_modules', 'onnxruntime-web', 'dist');
const ORT_FILES = ['ort.wasm.min.mjs', 'ort-wasm-simd-threaded.mjs', 'ort-wasm-simd-threaded.wasm'];
// The browser fetches these, and the files their graphs read weights from (manifest external_data:
// model.onnx reads its weights from model.text.onnx); the int8 text graph it never runs.
const BUNDLE_FILES = ['manifest.json', 'labels.json', 'tokenizer.json', 'model.onnx', 'model.int8.onnx'];

function bundleFiles(bundleDir) {
  const external = JSON.parse(fs.readFileSync(path.join(bundleDir, 'manifest.json'), 'utf8')).external_data ?? {};
  const hosts = BUNDLE_FILES.flatMap((name) => (Array.isArray(external[name]) ? external[name] : []));
  return [...new Set([...BUNDLE_FILES, ...hosts])].filter((name) => path.basename(String(name)) === name);
}

function fail(message) {
  process.stderr.write(`error: ${message}\n`);
  process.exit(1);
}

function copy(from, to) {
  fs.mkdirSync(path.dirname(to), { recursive: true });
  fs.copyFileSync(from, to);
}

const [outArg, bundleArg, ...extra] = process.argv.slice(2);
if (!outArg || extra.length) fail('usage: node clients/web/scripts/site.mjs OUT_DIR [BUNDLE_DIR]');
const out = path.resolve(outArg);
if (fs.existsSync(out)) fail(`${out} already exists; choose a new folder`);
for (const name of ORT_FILES) {
  if (!fs.existsSync(path.join(WEB, ORT_DIST, name))) fail(`${path.join(WEB, ORT_DIST, name)} is missing: run npm ci --prefix clients/web`);
}
if (bundleArg !== undefined && !fs.existsSync(path.join(bundleArg, 'manifest.json'))) {
  fail(`${path.resolve(bundleArg)}: not a bundle directory (no manifest.json; run 'rnnonnx export' to make one)`);
}

const tmp = fs.mkdtempSync(path.join(path.dirname(out), `.${path.basename(out)}.tmp-`));
try {
  for (const name of ['index.html', 'rnnonnx-web.js']) copy(path.join(WEB, name), path.join(tmp, 'web', name));
  for (const name of ORT_FILES) copy(path.join(WEB, ORT_DIST, name), path.join(tmp, 'web', ORT_DIST, name));
  for (const name of ['tokenizer.mjs', 'unicode-tables.mjs', 'predictions.mjs']) copy(path.join(NODE, name), path.join(tmp, 'node', name));
  if (bundleArg !== undefined) {
    for (const name of bundleFiles(bundleArg)) {
      const from = path.join(bundleArg, name);
      if (fs.existsSync(from)) copy(from, path.join(tmp, 'web', 'bundle', name));
    }
  }
  fs.renameSync(tmp, out);
} catch (err) {
  fs.rmSync(tmp, { recursive: true, force: true });
  fail(`cannot write ${out} (${err.message})`);
}
process.stdout.write(`wrote ${out}: serve it (e.g. python3 -m http.server -d ${outArg}) and open /web/\n`);
