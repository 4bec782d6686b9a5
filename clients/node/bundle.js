'use strict';
// Reading an rnnonnx bundle: manifest (format, version, sha256 of every file), labels, tokenizer.
// Mirrors rnnonnx/bundle.py; a bundle that fails a check raises BundleError with the reason.

const fs = require('node:fs');
const path = require('node:path');
const crypto = require('node:crypto');

const BUNDLE_FORMAT = 'rnnonnx-bundle';
const FORMAT_VERSION = 1;
const MANIFEST = 'manifest.json';
const TOKENIZER = 'tokenizer.json';
const LABELS = 'labels.json';

class BundleError extends Error {
  constructor(message) {
    super(message);
    this.name = 'BundleError';
  }
}

function readJson(file, what) {
  let raw;
  try {
    raw = fs.readFileSync(file);
  } catch (err) {
    if (err.code === 'ENOENT') throw new BundleError(`${file}: missing ${what}`);
    throw err;
  }
  try {
    return JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(raw));
  } catch (err) {
    throw new BundleError(`${file}: ${what} is not valid JSON (${err.message})`);
  }
}

function sha256Of(file) {
  const digest = crypto.createHash('sha256');
  const fd = fs.openSync(file, 'r');
  try {
    const chunk = Buffer.allocUnsafe(1 << 20);
    let n;
    while ((n = fs.readSync(fd, chunk, 0, chunk.length, null)) > 0) digest.update(chunk.subarray(0, n));
  } finally {
    fs.closeSync(fd);
  }
  return digest.digest('hex');
}

/** Read and check a bundle directory; returns {dir, manifest, labels, tokenizerData, file(name), has(name)}. */
function readBundle(bundleDir, { verify = true } = {}) {
  const dir = path.resolve(String(bundleDir));
  let stat;
  try {
    stat = fs.statSync(dir);
  } catch {
    stat = null;
  }
  if (!stat || !stat.isDirectory()) {
    throw new BundleError(`${dir}: not a bundle directory (run 'rnnonnx export' to make one)`);
  }
  const manifest = readJson(path.join(dir, MANIFEST), 'manifest');
  const isObject = manifest !== null && typeof manifest === 'object' && !Array.isArray(manifest);
  if (!isObject || manifest.format !== BUNDLE_FORMAT) {
    const got = isObject ? manifest.format : undefined;
    throw new BundleError(`${dir}: not an rnnonnx bundle (manifest format is ${JSON.stringify(got ?? null)})`);
  }
  if (manifest.format_version !== FORMAT_VERSION) {
    throw new BundleError(
      `${dir}: bundle format version ${JSON.stringify(manifest.format_version ?? null)} is not supported ` +
        `(this client reads version ${FORMAT_VERSION}); re-export the bundle or upgrade the client`,
    );
  }
  const files = manifest.files;
  if (files === null || typeof files !== 'object' || Array.isArray(files) || !('model.onnx' in files)) {
    throw new BundleError(`${dir}: manifest lists no model.onnx`);
  }
  if (verify) verifyFiles(dir, files);
  const has = (name) => Object.prototype.hasOwnProperty.call(files, name);
  const file = (name) => {
    if (!has(name)) throw new BundleError(`${dir}: bundle has no ${name}`);
    return path.join(dir, name);
  };
  const labels = readJson(path.join(dir, LABELS), 'labels');
  if (!Array.isArray(labels) || labels.length < 2 || !labels.every((x) => typeof x === 'string')) {
    throw new BundleError(`${path.join(dir, LABELS)}: expected a list of two or more label names`);
  }
  const tokenizerData = readJson(path.join(dir, TOKENIZER), 'tokenizer');
  return { dir, manifest, labels, tokenizerData, has, file };
}

/** Check every file the manifest lists against its size and sha256. */
function verifyFiles(dir, files) {
  for (const [name, entry] of Object.entries(files)) {
    if (path.basename(name) !== name || name === '.' || name === '..') {
      throw new BundleError(`${dir}: manifest names a file outside the bundle: ${JSON.stringify(name)}`);
    }
    const file = path.join(dir, name);
    let stat;
    try {
      stat = fs.statSync(file);
    } catch {
      stat = null;
    }
    if (!stat || !stat.isFile()) throw new BundleError(`${file}: missing (listed in the manifest)`);
    const want = entry && typeof entry === 'object' ? entry : {};
    if (stat.size !== want.bytes) {
      throw new BundleError(`${file}: ${stat.size} bytes, the manifest says ${want.bytes} (truncated or replaced?)`);
    }
    if (sha256Of(file) !== want.sha256) {
      throw new BundleError(`${file}: checksum mismatch with the manifest (corrupted or modified)`);
    }
  }
}

module.exports = { BundleError, readBundle, verifyFiles, sha256Of, BUNDLE_FORMAT, FORMAT_VERSION };
