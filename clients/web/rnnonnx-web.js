// rnnonnx in the browser: classify texts with a bundle written by `rnnonnx export`, on
// onnxruntime-web's WebAssembly backend.
//
//   import { load } from './rnnonnx-web.js';
//   const model = await load('bundles/lstm/');        // fetches and checks the bundle (sha256)
//   const [p] = await model.predict(['a gripping, funny film']);  // {label, score, probabilities}
//
// It runs the ids graph (model.onnx: token ids in), tokenized here by the Node.js client's own
// tokenizer module (../node/tokenizer.mjs, the one file both clients import), not the text graph:
// onnxruntime-web's StringNormalizer lowercases some letters differently from the tokenizer rule
// (circled letters, letters new in Unicode 13 and 14), so only the JavaScript tokenizer gives the
// Python predictor's tokens at every code point.

import * as ort from 'onnxruntime-web/wasm';
import { Tokenizer, padIds } from '../node/tokenizer.mjs';
import { bundleThresholds, checkTexts, lengthBatches, predictionsFromProba } from '../node/predictions.mjs';

export { predictionsFromProba };

export { Tokenizer };

const BUNDLE_FORMAT = 'rnnonnx-bundle';
const FORMAT_VERSION = 1;
const MODEL_FILES = { fp32: 'model.onnx', int8: 'model.int8.onnx' };
const IDS_INPUT = 'input_ids';
const PROBABILITIES = 'probabilities';

/** A bundle that cannot be used: not one, a newer format, a file missing or not matching its checksum. */
export class BundleError extends Error {
  constructor(message) {
    super(message);
    this.name = 'BundleError';
  }
}

async function fetchBytes(url, fetchFn) {
  let response;
  try {
    response = await fetchFn(url);
  } catch (err) {
    throw new BundleError(`${url}: cannot fetch it (${err.message})`);
  }
  if (!response.ok) throw new BundleError(`${url}: HTTP ${response.status}${response.status === 404 ? ' (missing from the bundle?)' : ''}`);
  return new Uint8Array(await response.arrayBuffer());
}

function parseJson(bytes, url, what) {
  try {
    return JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch (err) {
    throw new BundleError(`${url}: ${what} is not valid JSON (${err.message})`);
  }
}

async function sha256Hex(bytes) {
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
  return Array.from(digest, (b) => b.toString(16).padStart(2, '0')).join('');
}

/** Check fetched files against the manifest's size and sha256 (as the Python and Node.js clients do). */
async function verifyFiles(base, files, fetched) {
  if (!globalThis.crypto?.subtle) {
    throw new BundleError(`${base}: cannot check the bundle's sha256 here: browsers offer SubtleCrypto only in secure contexts (https:// or localhost); serve it so, or load with {verify: false}`);
  }
  for (const [name, bytes] of Object.entries(fetched)) {
    const want = files[name];
    const url = new URL(name, base).href;
    if (bytes.byteLength !== want.bytes) throw new BundleError(`${url}: ${bytes.byteLength} bytes, the manifest says ${want.bytes} (truncated or replaced?)`);
    if ((await sha256Hex(bytes)) !== want.sha256) throw new BundleError(`${url}: checksum mismatch with the manifest (corrupted or modified)`);
  }
}

/** The bundle files the manifest says ``modelFile`` reads as external data (manifest.external_data). */
function externalData(manifest, modelFile, base) {
  const record = manifest.external_data ?? {};
  const hosts = record[modelFile] ?? [];
  if (!Array.isArray(hosts) || !hosts.every((h) => typeof h === 'string' && h !== modelFile && Object.prototype.hasOwnProperty.call(manifest.files, h))) {
    throw new BundleError(`${base}: manifest external_data of ${modelFile} must list other files of the bundle`);
  }
  return hosts;
}

export class Classifier {
  constructor({ url, manifest, labels, tokenizer, session, precision, modelFile, batchSize }) {
    this.url = url;
    this.manifest = manifest;
    this.labels = labels;
    this.tokenizer = tokenizer;
    this.session = session;
    this.graph = 'ids';
    this.precision = precision;
    this.modelFile = modelFile;
    this.batchSize = batchSize;
  }

  /** Token ids of one text (the model's input), truncated to max_len. */
  encode(text) {
    return this.tokenizer.encode(text);
  }

  /** Probabilities for each text: an array of Float32Array rows (one column per label, in labels order). */
  async predictProba(texts) {
    checkTexts(texts);
    const k = this.labels.length;
    const out = new Float32Array(texts.length * k);
    // Group texts by token count, as the Python predictor does, so little compute goes to padding.
    const encoded = texts.map((t) => this.tokenizer.encode(t));
    for (const chosen of lengthBatches(encoded.map((e) => e.length), this.batchSize)) {
      const { data, dims } = padIds(chosen.map((i) => encoded[i]), this.tokenizer.padId);
      const input = new ort.Tensor('int64', data, dims);
      const result = await this.session.run({ [IDS_INPUT]: input });
      input.dispose?.();
      const tensor = result[PROBABILITIES];
      if (!tensor || tensor.type !== 'float32' || tensor.dims.length !== 2 || tensor.dims[0] !== chosen.length || tensor.dims[1] !== k) {
        throw new BundleError(`${this.modelFile}: expected output '${PROBABILITIES}' float32 [${chosen.length}, ${k}], got ${tensor ? `${tensor.type} [${tensor.dims}]` : 'none'}`);
      }
      const probs = tensor.data;
      chosen.forEach((i, r) => out.set(probs.subarray(r * k, (r + 1) * k), i * k));
      Object.values(result).forEach((t) => t.dispose?.());
    }
    return Array.from({ length: texts.length }, (_, i) => out.subarray(i * k, (i + 1) * k));
  }

  /** One prediction per text: {label, score, probabilities} (plus top when options.topK is given, and
   * labels, the set above the per-label thresholds, for a multi-label bundle). */
  async predict(texts, options = {}) {
    const thresholds = bundleThresholds(this.manifest, this.labels);
    return predictionsFromProba(await this.predictProba(texts), this.labels, { ...options, thresholds });
  }

  async release() {
    await this.session.release();
  }
}

/**
 * Fetch a bundle (a URL to its folder, relative to the page), check it and open its ids graph.
 *
 * options.precision: 'fp32' (model.onnx, default) or 'int8' (model.int8.onnx, if the bundle has one).
 * options.verify: check size and sha256 of every fetched file against manifest.json (default true).
 * options.batchSize: texts per model call (default 256, as Python).
 * options.threads: onnxruntime-web's wasm threads (more than 1 needs a cross-origin-isolated page).
 * options.wasmPaths: where onnxruntime-web's .wasm files are, when not next to its script.
 * options.fetch: the fetch function to use (default: the global one).
 */
export async function load(url, options = {}) {
  const { precision = 'fp32', verify = true, batchSize = 256, threads, wasmPaths, fetch: fetchFn = globalThis.fetch.bind(globalThis) } = options;
  if (!(precision in MODEL_FILES)) throw new TypeError(`precision must be one of ${Object.keys(MODEL_FILES).join(', ')}, not ${JSON.stringify(precision)}`);
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new TypeError('batchSize must be a positive integer');
  if (threads !== undefined && !(Number.isInteger(threads) && threads >= 1)) throw new TypeError('threads must be a positive integer');
  const base = new URL(String(url).endsWith('/') ? String(url) : `${url}/`, globalThis.document?.baseURI ?? globalThis.location?.href).href;

  const manifestUrl = new URL('manifest.json', base).href;
  const manifest = parseJson(await fetchBytes(manifestUrl, fetchFn), manifestUrl, 'manifest');
  const isObject = manifest !== null && typeof manifest === 'object' && !Array.isArray(manifest);
  if (!isObject || manifest.format !== BUNDLE_FORMAT) {
    throw new BundleError(`${base}: not an rnnonnx bundle (manifest format is ${JSON.stringify((isObject ? manifest.format : undefined) ?? null)})`);
  }
  if (manifest.format_version !== FORMAT_VERSION) {
    throw new BundleError(`${base}: bundle format version ${JSON.stringify(manifest.format_version ?? null)} is not supported (this client reads version ${FORMAT_VERSION}); re-export the bundle or upgrade the client`);
  }
  const files = manifest.files;
  if (files === null || typeof files !== 'object' || Array.isArray(files) || !('model.onnx' in files)) {
    throw new BundleError(`${base}: manifest lists no model.onnx`);
  }
  const modelFile = MODEL_FILES[precision];
  if (!Object.prototype.hasOwnProperty.call(files, modelFile)) {
    const hint = precision === 'int8' ? "export it with 'rnnonnx export RUN_DIR --quantize int8'" : 'export it again';
    throw new BundleError(`${base}: bundle has no ${modelFile} (precision '${precision}'); ${hint}`);
  }
  // Files whose bytes the model reads as ONNX external data (the ids graph reads its weights from
  // model.text.onnx, so a bundle stores them once): fetched and checked like the model itself.
  const external = externalData(manifest, modelFile, base);
  const names = ['labels.json', 'tokenizer.json', modelFile, ...external];
  for (const name of names) if (!Object.prototype.hasOwnProperty.call(files, name)) throw new BundleError(`${base}: manifest lists no ${name}`);
  const fetched = Object.fromEntries(await Promise.all(names.map(async (name) => [name, await fetchBytes(new URL(name, base).href, fetchFn)])));
  if (verify) await verifyFiles(base, files, fetched);

  const labelsUrl = new URL('labels.json', base).href;
  const labels = parseJson(fetched['labels.json'], labelsUrl, 'labels');
  if (!Array.isArray(labels) || labels.length < 2 || !labels.every((x) => typeof x === 'string')) {
    throw new BundleError(`${labelsUrl}: expected a list of two or more label names`);
  }
  const tokenizerUrl = new URL('tokenizer.json', base).href;
  let tokenizer;
  try {
    tokenizer = new Tokenizer(parseJson(fetched['tokenizer.json'], tokenizerUrl, 'tokenizer'));
  } catch (err) {
    throw err instanceof BundleError ? err : new BundleError(`${tokenizerUrl}: bad tokenizer (${err.message})`);
  }

  if (threads !== undefined) ort.env.wasm.numThreads = threads;
  if (wasmPaths !== undefined) ort.env.wasm.wasmPaths = wasmPaths;
  let session;
  try {
    session = await ort.InferenceSession.create(fetched[modelFile], {
      executionProviders: ['wasm'],
      graphOptimizationLevel: 'all',
      externalData: external.map((name) => ({ path: name, data: fetched[name] })),
    });
  } catch (err) {
    throw new BundleError(`${new URL(modelFile, base).href}: ONNX Runtime cannot load it (${String(err.message).split('\n')[0]})`);
  }
  return new Classifier({ url: base, manifest, labels, tokenizer, session, precision, modelFile: new URL(modelFile, base).href, batchSize });
}
