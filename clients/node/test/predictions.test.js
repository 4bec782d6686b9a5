'use strict';
// node --test clients/node/test: model calls split where padding would be work (as rnnonnx.predictor.text_batches).
const test = require('node:test');
const assert = require('node:assert/strict');
const { lengthBatches, MIN_SPLIT_ROWS } = require('../predictions.mjs');

test('a call ends before a text much longer than its shortest, once it has enough rows', () => {
  const lengths = Array.from({ length: 2 * MIN_SPLIT_ROWS }, (_, i) => (i % 2 ? 3 : 12));
  const batches = lengthBatches(lengths, 256);
  assert.deepEqual(batches.map((b) => [...new Set(b.map((i) => lengths[i]))]), [[3], [12]]);
  assert.deepEqual(batches.flat().sort((a, b) => a - b), lengths.map((_, i) => i));
});

test('small calls stay whole and batchSize bounds every call', () => {
  const few = Array.from({ length: MIN_SPLIT_ROWS - 2 }, (_, i) => (i % 2 ? 3 : 12));
  assert.equal(lengthBatches(few, 256).length, 1);
  assert.deepEqual(lengthBatches([5, 5, 5, 5, 5], 2).map((b) => b.length), [2, 2, 1]);
  assert.deepEqual(lengthBatches([], 8), []);
});
