'use strict';
// rnnonnx for Node.js: classify texts with a bundle written by `rnnonnx export`.
//
//   const rnnonnx = require('rnnonnx');
//   const model = await rnnonnx.load('path/to/bundle');
//   const [top] = await model.predict(['a gripping, funny film']);  // {label, score, probabilities}
//
// Two graphs: 'text' (model.text.onnx: strings in, tokenization inside the ONNX graph) and 'ids'
// (model.onnx: token ids in, tokenized here by tokenizer.mjs, which follows tokenizer.json; the browser client
// clients/web imports the very same file).

const ort = require('onnxruntime-node');
const { BundleError, readBundle } = require('./bundle');
const { Tokenizer, padIds } = require('./tokenizer.mjs'); // an ES module: Node.js >= 20.19 / 22.12
const { bundleThresholds, checkTexts, lengthBatches, predictionsFromProba } = require('./predictions.mjs');

const GRAPHS = ['auto', 'text', 'ids'];
const PRECISIONS = ['fp32', 'int8'];
const MODEL_FILES = {
  ids: { fp32: 'model.onnx', int8: 'model.int8.onnx' },
  text: { fp32: 'model.text.onnx', int8: 'model.text.int8.onnx' },
};

class Classifier {
  constructor(bundle, tokenizer, session, graph, precision, modelFile, batchSize) {
    this.bundle = bundle;
    this.tokenizer = tokenizer;
    this.session = session;
    this.graph = graph;
    this.precision = precision;
    this.modelFile = modelFile;
    this.batchSize = batchSize;
    this.labels = [...bundle.labels];
    this.thresholds = bundleThresholds(bundle.manifest, this.labels); // null: multi-class (checked by load)
    this.task = this.thresholds ? 'multi-label' : 'multi-class';
  }

  /** Probabilities for each text: an array of Float32Array rows (one column per label). */
  async predictProba(texts) {
    const flat = await this._run(checkTexts(texts));
    const k = this.labels.length;
    return Array.from({ length: texts.length }, (_, i) => flat.subarray(i * k, (i + 1) * k));
  }

  /**
   * One prediction per text, the shape every rnnonnx face uses: {label, score, probabilities: {label: p}},
   * plus top: [{label, score}, ...] (best first) when topK is given (-1: every label). With minScore,
   * label is null when the top probability is below it. A multi-label bundle's predictions also have
   * labels: the set at or above the bundle's per-label thresholds (minScore replaces them), best first.
   */
  async predict(texts, options = {}) {
    return predictionsFromProba(await this.predictProba(texts), this.labels, { ...options, thresholds: this.thresholds });
  }


  /** Token ids of one text (the ids graph's input), truncated to max_len. */
  encode(text) {
    return this.tokenizer.encode(text);
  }

  async release() {
    await this.session.release();
  }

  async _run(texts) {
    const k = this.labels.length;
    const out = new Float32Array(texts.length * k);
    if (this.graph === 'text') {
      // Group texts by estimated token count (as the Python predictor does) so little compute goes to padding.
      for (const chosen of lengthBatches(texts.map((t) => this.tokenizer.estimatedSteps(t)), this.batchSize)) {
        // onnxruntime-node passes strings to ONNX Runtime as C strings, cut at the first U+0000;
        // U+0000 is no word character, so a space in its place changes no token.
        const batch = chosen.map((i) => (texts[i].includes('\0') ? texts[i].replace(NUL, ' ') : texts[i]));
        const result = await this.session.run({ text: new ort.Tensor('string', batch, [batch.length]) });
        const probs = this._probabilities(result, chosen.length);
        chosen.forEach((i, r) => out.set(probs.subarray(r * k, (r + 1) * k), i * k));
      }
      return out;
    }
    // Group texts by token count (as the Python predictor does) so little compute goes to padding.
    const encoded = texts.map((t) => this.tokenizer.encode(t));
    for (const chosen of lengthBatches(encoded.map((e) => e.length), this.batchSize)) {
      const { data, dims } = padIds(chosen.map((i) => encoded[i]), this.tokenizer.padId);
      const result = await this.session.run({ input_ids: new ort.Tensor('int64', data, dims) });
      const probs = this._probabilities(result, chosen.length);
      chosen.forEach((i, r) => out.set(probs.subarray(r * k, (r + 1) * k), i * k));
    }
    return out;
  }

  _probabilities(result, rows) {
    const tensor = result.probabilities;
    const k = this.labels.length;
    if (!tensor || tensor.type !== 'float32' || tensor.dims.length !== 2 || tensor.dims[0] !== rows || tensor.dims[1] !== k) {
      throw new BundleError(`${this.modelFile}: expected output 'probabilities' float32 [${rows}, ${k}], got ${tensor ? `${tensor.type} [${tensor.dims}]` : 'none'}`);
    }
    return tensor.data;
  }
}

const NUL = /\0/g;


/**
 * Load a bundle directory: verify its manifest (format version, sha256 of every file) and open the model.
 *
 * options.graph: 'text' (strings in, the default when the bundle has model.text.onnx), 'ids' (token ids
 *   in, tokenized in JavaScript), or 'auto'.
 * options.precision: 'fp32' (default) or 'int8' (the bundle's quantized model, if it has one).
 * options.threads: ONNX Runtime intra-op threads (default: ONNX Runtime's choice).
 * options.batchSize: texts per model call (default 256).
 * options.verify: check checksums (default true).
 */
async function load(bundleDir, options = {}) {
  const { graph = 'auto', precision = 'fp32', threads, batchSize = 256, verify = true } = options;
  if (!GRAPHS.includes(graph)) throw new TypeError(`graph must be one of ${GRAPHS.join(', ')}, not ${JSON.stringify(graph)}`);
  if (!PRECISIONS.includes(precision)) throw new TypeError(`precision must be one of ${PRECISIONS.join(', ')}, not ${JSON.stringify(precision)}`);
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new TypeError('batchSize must be a positive integer');
  const bundle = readBundle(bundleDir, { verify });
  try {
    bundleThresholds(bundle.manifest, bundle.labels);
  } catch (err) {
    throw new BundleError(`${bundle.dir}/manifest.json: ${err.message}`);
  }
  let chosen = graph;
  if (graph === 'auto') chosen = bundle.has(MODEL_FILES.text[precision]) ? 'text' : 'ids';
  const name = MODEL_FILES[chosen][precision];
  if (!bundle.has(name)) {
    const hint = precision === 'int8' ? "export it with 'rnnonnx export RUN_DIR --quantize int8'" : 'it was exported by an older rnnonnx; export it again';
    throw new BundleError(`${bundle.dir}: bundle has no ${name} (graph '${chosen}', precision '${precision}'); ${hint}`);
  }
  let tokenizer;
  try {
    tokenizer = new Tokenizer(bundle.tokenizerData);
  } catch (err) {
    throw new BundleError(`${bundle.dir}/tokenizer.json: bad tokenizer (${err.message})`);
  }
  const sessionOptions = { graphOptimizationLevel: 'all' };
  if (threads !== undefined) {
    if (!Number.isInteger(threads) || threads < 1) throw new TypeError('threads must be a positive integer');
    sessionOptions.intraOpNumThreads = threads;
    sessionOptions.interOpNumThreads = 1;
  }
  let session;
  try {
    session = await ort.InferenceSession.create(bundle.file(name), sessionOptions);
  } catch (err) {
    throw new BundleError(`${bundle.file(name)}: ONNX Runtime cannot load it (${String(err.message).split('\n')[0]})`);
  }
  return new Classifier(bundle, tokenizer, session, chosen, precision, bundle.file(name), batchSize);
}

module.exports = { load, Classifier, Tokenizer, BundleError };
