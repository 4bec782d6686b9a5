// The prediction shape every face of rnnonnx uses (Python's Prediction.to_dict(), `rnnonnx predict
// --json`, the HTTP server), written once for the Node.js and browser clients, which both import it.

/** The texts a client may be given: an array of strings (one string alone is refused, not split). */
export function checkTexts(texts) {
  if (typeof texts === 'string') throw new TypeError('predict takes an array of texts, not one string');
  if (!Array.isArray(texts)) throw new TypeError('predict takes an array of texts');
  texts.forEach((t, i) => {
    if (typeof t !== 'string') throw new TypeError(`text ${i} is a ${typeof t}, not a string`);
  });
  return texts;
}

/**
 * A bundle's per-label thresholds: null for a multi-class bundle (its manifest says "task":
 * "multi-class", or nothing, as bundles from before multi-label), else the manifest's "thresholds",
 * one number in [0, 1] per label (an Error otherwise).
 */
export function bundleThresholds(manifest, labels) {
  const task = manifest.task ?? 'multi-class';
  if (task === 'multi-class') return null;
  if (task !== 'multi-label') throw new Error(`unknown task ${JSON.stringify(task)} (one of multi-class, multi-label)`);
  const t = manifest.thresholds;
  if (!Array.isArray(t) || t.length !== labels.length || !t.every((v) => typeof v === 'number' && v >= 0 && v <= 1)) {
    throw new Error("a multi-label bundle needs 'thresholds', one number in [0, 1] per label");
  }
  return t;
}

/**
 * Predictions from probability rows, in the shape every face of rnnonnx uses:
 * {label, score, probabilities: {label: p}} plus top: [{label, score}] (best first) when topK is
 * given (-1: every label). label is the first maximum (as numpy's argmax), or null below minScore.
 * With thresholds (a multi-label bundle's, one per label), labels: every label at or above its
 * threshold (or minScore, which then replaces them all), best first; label is its first, or null.
 */

export function predictionsFromProba(rows, labels, { topK, minScore, thresholds } = {}) {
  if (topK !== undefined && topK !== null && !(Number.isInteger(topK) && (topK >= 1 || topK === -1))) {
    throw new TypeError(`topK must be a positive integer or -1 (every label), not ${JSON.stringify(topK)}`);
  }
  if (minScore !== undefined && minScore !== null && !(typeof minScore === 'number' && minScore >= 0 && minScore <= 1)) {
    throw new TypeError(`minScore must be a probability between 0 and 1, not ${JSON.stringify(minScore)}`);
  }
  const k = topK === undefined || topK === null || topK === -1 ? labels.length : Math.min(topK, labels.length);
  const hasMin = minScore !== undefined && minScore !== null;
  // float32 limits, as the Python predictor compares them (probabilities are float32 already)
  const limits = thresholds ? labels.map((_, j) => Math.fround(hasMin ? minScore : thresholds[j])) : null;
  return rows.map((row) => {
    let best = 0;
    for (let j = 1; j < row.length; j++) if (row[j] > row[best]) best = j;
    const prediction = {
      label: !hasMin || row[best] >= minScore ? labels[best] : null,
      score: row[best],
      probabilities: Object.fromEntries(labels.map((label, j) => [label, row[j]])),
    };
    const ranked = () => labels.map((_, j) => j).sort((a, b) => row[b] - row[a]); // stable: ties keep label order
    if (limits) {
      prediction.labels = ranked().filter((j) => row[j] >= limits[j]).map((j) => labels[j]);
      prediction.label = prediction.labels.length ? prediction.labels[0] : null;
    }
    if (topK !== undefined && topK !== null) {
      prediction.top = ranked().slice(0, k).map((j) => ({ label: labels[j], score: row[j] }));
    }
    return prediction;
  });
}

// Model calls as the Python predictor makes them (rnnonnx.predictor.text_batches): rows sorted by
// token count (estimated, for the text-in graph), at most batchSize per call, and a call of at least
// MIN_SPLIT_ROWS rows ends before a text of more than PADDING_SLACK more tokens than its shortest. ONNX Runtime's recurrent kernels compute every
// row up to the call's longest text, so padding is work; results do not depend on the split.
export const MIN_SPLIT_ROWS = 16;
export const PADDING_SLACK = 0.25;

/** Row indices of each model call for rows of the given lengths (stable for equal lengths). */
export function lengthBatches(lengths, batchSize) {
  const order = lengths.map((_, i) => i).sort((a, b) => lengths[a] - lengths[b]);
  const batches = [];
  let current = [];
  for (const i of order) {
    const padded = current.length >= MIN_SPLIT_ROWS && lengths[i] > (1 + PADDING_SLACK) * Math.max(1, lengths[current[0]]);
    if (current.length && (padded || current.length >= batchSize)) {
      batches.push(current);
      current = [];
    }
    current.push(i);
  }
  if (current.length) batches.push(current);
  return batches;
}
