'use strict';
// node --test clients/node/test: manifest checks (format, version, sizes, sha256) on a synthetic bundle.
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const crypto = require('node:crypto');
const { readBundle, BundleError } = require('../bundle');

// Every synthetic bundle lives under one temporary folder, removed when the tests end.
const root = fs.mkdtempSync(path.join(os.tmpdir(), 'rnnonnx-node-test-'));
test.after(() => fs.rmSync(root, { recursive: true, force: true }));

function makeBundle(edit = () => {}) {
  const dir = fs.mkdtempSync(path.join(root, 'bundle-'));
  const files = {
    'model.onnx': Buffer.from('not really a model'),
    'labels.json': Buffer.from('["neg", "pos"]\n'),
    'tokenizer.json': Buffer.from(JSON.stringify({ format: 'rnnonnx-tokenizer/1', vocab: ['<pad>', '<unk>'] })),
  };
  const entries = {};
  for (const [name, bytes] of Object.entries(files)) {
    fs.writeFileSync(path.join(dir, name), bytes);
    entries[name] = { sha256: crypto.createHash('sha256').update(bytes).digest('hex'), bytes: bytes.length };
  }
  const manifest = { format: 'rnnonnx-bundle', format_version: 1, files: entries };
  edit(manifest, dir);
  fs.writeFileSync(path.join(dir, 'manifest.json'), JSON.stringify(manifest));
  return dir;
}

test('a complete bundle reads', () => {
  const bundle = readBundle(makeBundle());
  assert.deepEqual(bundle.labels, ['neg', 'pos']);
  assert.ok(bundle.has('model.onnx') && !bundle.has('model.text.onnx'));
  assert.throws(() => bundle.file('model.text.onnx'), /bundle has no model.text.onnx/);
});

test('a modified file fails its checksum', () => {
  const dir = makeBundle((m, d) => fs.writeFileSync(path.join(d, 'model.onnx'), 'not REALLY a model'));
  assert.throws(() => readBundle(dir), (err) => err instanceof BundleError && /checksum mismatch/.test(err.message));
  assert.doesNotThrow(() => readBundle(dir, { verify: false }));
});

test('a truncated or missing file is named', () => {
  assert.throws(() => readBundle(makeBundle((m, d) => fs.writeFileSync(path.join(d, 'model.onnx'), 'short'))), /5 bytes, the manifest says 18/);
  assert.throws(() => readBundle(makeBundle((m, d) => fs.unlinkSync(path.join(d, 'labels.json')))), /labels.json: missing/);
});

test('format and format_version are checked', () => {
  assert.throws(() => readBundle(makeBundle((m) => (m.format_version = 2))), /format version 2 is not supported/);
  assert.throws(() => readBundle(makeBundle((m) => (m.format = 'something-else'))), /not an rnnonnx bundle/);
  assert.throws(() => readBundle(makeBundle((m) => (m.files['../x'] = { sha256: '', bytes: 0 }))), /outside the bundle/);
  assert.throws(() => readBundle(path.join(root, 'no-such-bundle-dir')), /not a bundle directory/);
});
