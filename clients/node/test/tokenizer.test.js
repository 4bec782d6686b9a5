'use strict';
// node --test clients/node/test: the tokenizer rule (as in tests/test_text.py) and bundle checks.
const test = require('node:test');
const assert = require('node:assert/strict');
const { Tokenizer, padIds, toJsPattern, simpleLower } = require('../tokenizer.mjs');
const TABLES = require('../unicode-tables.mjs');

const WORD_CLASS_LEGACY = '[\\p{L}\\p{N}_]';
const spec = (analyzer, extra = {}) => ({
  format: 'rnnonnx-tokenizer/1', analyzer, lowercase: 'unicode-simple',
  token_pattern: analyzer === 'word' ? `${WORD_CLASS_LEGACY}{2,}` : WORD_CLASS_LEGACY,
  max_len: 64, pad_id: 0, unk_id: 1, vocab: ['<pad>', '<unk>'], ...extra,
});

test('simple lowercase: per code point, Unicode 14.0 table', () => {
  assert.equal(simpleLower('\u0130stanbul'), 'istanbul'); // U+0130 -> i, one code point
  assert.equal(simpleLower('ΟΔΟΣ ΟΔΟΣ.'), 'οδοσ οδοσ.'); // no final-sigma rule
  assert.equal(simpleLower('Straße ÉCOLE ẞ'), 'straße école ß');
  assert.equal(simpleLower('\uA7CB \u{10D50}'), '\uA7CB \u{10D50}'); // capitals new after Unicode 14: unchanged
  assert.equal(TABLES.version, '14.0.0');
});

test('estimated steps: spaces and line breaks plus one, or code points but spaces, from 1 to max_len', () => {
  const word = new Tokenizer(spec('word'));
  assert.equal(word.estimatedSteps('a gripping, funny\nfilm'), 4);
  assert.equal(word.estimatedSteps(''), 1);
  assert.equal(new Tokenizer(spec('word', { max_len: 3 })).estimatedSteps('one two three four five'), 3);
  const char = new Tokenizer(spec('char', { max_len: 5 }));
  assert.equal(char.estimatedSteps('日本 語'), 3);
  assert.equal(char.estimatedSteps('\u{20000}\u{20001}'), 2); // code points, not UTF-16 units
  assert.equal(char.estimatedSteps('日本語の文章です'), 5);
  assert.equal(char.estimatedSteps('   '), 1);
});

test('word tokens are runs of two or more word characters', () => {
  const t = new Tokenizer(spec('word'));
  assert.deepEqual(t.tokens('I am a Bad_Cat, 42 times! é x 日本語'), ['am', 'bad_cat', '42', 'times', '日本語']);
  assert.deepEqual(t.tokens(''), []);
  assert.deepEqual(t.tokens('?! ...'), []);
  assert.deepEqual(t.tokens('e\u0301te\u0301'), ['te']); // combining marks are not word characters
  assert.deepEqual(t.tokens('\u{31350}\u{31350} ab'), ['ab']); // a letter new in Unicode 15 is not one (yet)
});

test('char analyzer yields each word character', () => {
  const t = new Tokenizer(spec('char'));
  assert.deepEqual(t.tokens('日本語です。A1!'), ['日', '本', '語', 'で', 'す', 'a', '1']);
});

test('encode truncates to max_len and maps unknown tokens', () => {
  const t = new Tokenizer(spec('word', { max_len: 3, vocab: ['<pad>', '<unk>', 'good', 'film'] }));
  assert.deepEqual(t.encode('Good film, GOOD mystery plot'), [2, 3, 2]);
  assert.deepEqual(t.encode('unseen words'), [1, 1]);
  assert.deepEqual(t.encode(''), []);
});

test('padding keeps at least one column', () => {
  assert.deepEqual(padIds([[], []]).dims, [2, 1]);
  const { data, dims } = padIds([[2], [3, 4, 5]]);
  assert.deepEqual(dims, [2, 3]);
  assert.deepEqual([...data], [2n, 0n, 0n, 3n, 4n, 5n]);
});

test('token_pattern syntax: RE2/Python escapes become JavaScript ones; properties are refused', () => {
  assert.equal(toJsPattern('[\\x{41}-\\x{5A}]{2,}'), '[\\u{41}-\\u{5A}]{2,}');
  assert.equal(toJsPattern('\\U0001F600'), '\\u{0001F600}');
  assert.equal(toJsPattern('\\w\\.'), '\\w\\.');
  assert.throws(() => toJsPattern('\\p{Lu}+'), /Unicode property/);
  assert.ok(!toJsPattern(`${WORD_CLASS_LEGACY}{2,}`).includes('\\p'));
});

test('bad tokenizer data is refused', () => {
  assert.throws(() => new Tokenizer({ ...spec('word'), format: 'other/9' }), /unknown tokenizer format/);
  assert.throws(() => new Tokenizer({ ...spec('word'), lowercase: 'full' }), /unknown lowercase rule/);
  assert.throws(() => new Tokenizer({ ...spec('word'), max_len: 0 }), /max_len/);
  assert.throws(() => new Tokenizer({ ...spec('word'), vocab: ['<pad>', '<unk>', 'x', 'x'] }), /duplicate/);
});
