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
 * Predictions from probability rows, in the shape every face of rnnonnx uses:
 * {label, score, probabilities: {label: p}} plus top: [{label, score}] (best first) when topK is
 * given (-1: every label). label is the first maximum (as numpy's argmax), or null below minScore.
 */

export function predictionsFromProba(rows, labels, { topK, minScore } = {}) {
  if (topK !== undefined && topK !== null && !(Number.isInteger(topK) && (topK >= 1 || topK === -1))) {
    throw new TypeError(`topK must be a positive integer or -1 (every label), not ${JSON.stringify(topK)}`);
  }
  if (minScore !== undefined && minScore !== null && !(typeof minScore === 'number' && minScore >= 0 && minScore <= 1)) {
    throw new TypeError(`minScore must be a probability between 0 and 1, not ${JSON.stringify(minScore)}`);
  }
  const k = topK === undefined || topK === null || topK === -1 ? labels.length : Math.min(topK, labels.length);
  return rows.map((row) => {
    let best = 0;
    for (let j = 1; j < row.length; j++) if (row[j] > row[best]) best = j;
    const prediction = {
      label: minScore === undefined || minScore === null || row[best] >= minScore ? labels[best] : null,
      score: row[best],
      probabilities: Object.fromEntries(labels.map((label, j) => [label, row[j]])),
    };
    if (topK !== undefined && topK !== null) {
      const order = labels.map((_, j) => j).sort((a, b) => row[b] - row[a]); // stable: ties keep label order
      prediction.top = order.slice(0, k).map((j) => ({ label: labels[j], score: row[j] }));
    }
    return prediction;
  });
}

// Model calls as the Python predictor makes them (rnnonnx.predictor.text_batches): rows sorted by
// length, at most batchSize per call, and a call of at least MIN_SPLIT_ROWS rows ends before a text
// more than PADDING_SLACK longer than its shortest. ONNX Runtime's recurrent kernels compute every
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
