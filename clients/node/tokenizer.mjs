// The JavaScript tokenizer, one ES module for the Node.js client (which require()s it: Node.js reads
// ES modules with require() from 20.19 and 22.12 on) and the browser (clients/web imports it).
// It reads tokenizer.json as data and follows the rule written in rnnonnx/text.py: lowercase code point by code point (Unicode 14.0 simple mappings), take the
// matches of token_pattern, look tokens up in the vocabulary (unknown -> unk_id), keep max_len.
//
// The rule is pinned to Unicode 14.0 by data, not by the engine: lowercasing uses the rule's own
// table (unicode-tables.mjs, a copy of rnnonnx/_unicode_tables.py), never String#toLowerCase, which
// follows the engine's Unicode (Node.js 20.20: 17.0, where e.g. U+A7CB, new in 16.0, lowercases to
// U+0264, a Unicode 14 letter) and applies the final-sigma rule and U+0130 -> 'i' + U+0307 to strings;
// token_pattern spells its class out code point by code point, so `\p{..}` never meets a newer table.

import * as TABLES from './unicode-tables.mjs';

export const TOKENIZER_FORMAT = 'rnnonnx-tokenizer/1';
const LOWERCASE = ['unicode-simple', 'none'];
// Bundles exported before the class was spelled out carry `[\p{L}\p{N}_]`; by the rule that meant
// Unicode 14.0's categories, which is the table's word class (not the engine's `\p{L}`).
const LEGACY_WORD_CLASS = '[\\p{L}\\p{N}_]';

const hex = (cp) => `\\u{${cp.toString(16)}}`;
const WORD_CLASS = `[${TABLES.wordRanges
  .trim()
  .split(/\s+/)
  .map((item) => item.split('-').map((h) => parseInt(h, 16)))
  .map(([lo, hi = lo]) => (lo === hi ? hex(lo) : `${hex(lo)}-${hex(hi)}`))
  .join('')}]`;
const LOWER = new Map(
  TABLES.lowerMap
    .trim()
    .split(/\s+/)
    .map((pair) => pair.split(':').map((h) => parseInt(h, 16)))
    .map(([from, to]) => [String.fromCodePoint(from), String.fromCodePoint(to)]),
);
const NON_ASCII = /[^\x00-\x7f]/;
const LOWER_RE = new RegExp(`[${[...LOWER.keys()].map((ch) => hex(ch.codePointAt(0))).join('')}]`, 'gu');

/**
 * Translate a token_pattern (the common subset of Python `re`, RE2 and JavaScript syntax) into a
 * JavaScript `u`-flag regular expression source: `\x{HHHH}` and `\UHHHHHHHH` become `\u{HHHH}`.
 * Unicode property escapes are refused (their meaning depends on the engine's Unicode version),
 * except the legacy word class, which becomes the rule's Unicode 14.0 class.
 */
export function toJsPattern(pattern) {
  pattern = pattern.split(LEGACY_WORD_CLASS).join(WORD_CLASS);
  let out = '';
  for (let i = 0; i < pattern.length; i++) {
    const ch = pattern[i];
    if (ch !== '\\') {
      out += ch;
      continue;
    }
    const next = pattern[i + 1];
    let m;
    if (next === 'x' && (m = /^\{([0-9A-Fa-f]{1,6})\}/.exec(pattern.slice(i + 2)))) {
      out += `\\u{${m[1]}}`;
      i += 1 + m[0].length;
    } else if (next === 'U' && (m = /^[0-9A-Fa-f]{8}/.exec(pattern.slice(i + 2)))) {
      out += `\\u{${m[0]}}`;
      i += 9;
    } else if (next === 'p' || next === 'P') {
      throw new Error(`token_pattern uses a Unicode property (\\${next}...), whose code points depend on the engine's Unicode version; re-export the bundle with a newer rnnonnx`);
    } else {
      out += ch + (next ?? '');
      i += 1;
    }
  }
  return out;
}

/** Lowercase code point by code point with the rule's Unicode 14.0 simple mappings. */
export function simpleLower(text) {
  if (!NON_ASCII.test(text)) return text.toLowerCase(); // exact for ASCII: A-Z -> a-z
  return text.replace(LOWER_RE, (ch) => LOWER.get(ch));
}

const WORD_BREAKS = /[ \n]/g;
const SPACES = / /g;

function countOf(text, pattern) {
  return text.match(pattern)?.length ?? 0;
}

const SURROGATE_PAIR = /[\uD800-\uDBFF][\uDC00-\uDFFF]/g;

function codePointLength(text) {
  let pairs = 0;
  if (/[\uD800-\uDBFF]/.test(text)) pairs = text.match(SURROGATE_PAIR)?.length ?? 0;
  return text.length - pairs;
}

export class Tokenizer {
  constructor(data) {
    if (!data || typeof data !== 'object') throw new TypeError('tokenizer.json must hold an object');
    if (data.format !== TOKENIZER_FORMAT) throw new Error(`unknown tokenizer format ${JSON.stringify(data.format ?? null)}`);
    if (!LOWERCASE.includes(data.lowercase)) throw new Error(`unknown lowercase rule ${JSON.stringify(data.lowercase ?? null)}`);
    if (typeof data.token_pattern !== 'string') throw new Error('token_pattern is missing');
    if (!Number.isInteger(data.max_len) || data.max_len < 1) throw new Error(`max_len must be a positive integer, not ${data.max_len}`);
    const vocab = data.vocab;
    if (!Array.isArray(vocab) || vocab.length < 2) throw new Error('vocab must be a list of two or more tokens');
    this.analyzer = data.analyzer;
    this.lowercase = data.lowercase === 'unicode-simple';
    this.maxLen = data.max_len;
    this.padId = data.pad_id ?? 0;
    this.unkId = data.unk_id ?? 1;
    this.tokenPattern = data.token_pattern;
    this.pattern = new RegExp(toJsPattern(data.token_pattern), 'gu');
    this.unicodeVersion = TABLES.version;
    this.vocab = vocab;
    this.index = new Map();
    vocab.forEach((token, i) => {
      if (typeof token !== 'string') throw new Error(`vocab entry ${i} is not a string`);
      if (this.index.has(token)) throw new Error(`vocabulary has duplicate token ${JSON.stringify(token)}`);
      this.index.set(token, i);
    });
  }

  /** Lowercase as the rule says (or not at all, for lowercase "none"). */
  lower(text) {
    return this.lowercase ? simpleLower(text) : text;
  }

  /** The tokens of one text, before vocabulary lookup and truncation. */
  tokens(text) {
    return this.lower(text).match(this.pattern) ?? [];
  }

  /**
   * About how many tokens a text gives, 1 to max_len, without tokenizing it: spaces and line breaks
   * plus one (analyzer word), or code points other than spaces (char), as
   * rnnonnx.text.TokenizerSpec.estimated_steps. It groups texts of similar token counts into the
   * text-in graph's calls; results never depend on it.
   */
  estimatedSteps(text) {
    const count = this.analyzer === 'word' ? countOf(text, WORD_BREAKS) + 1 : codePointLength(text) - countOf(text, SPACES);
    return Math.min(Math.max(1, count), this.maxLen);
  }

  /** Token ids of one text, truncated to max_len (possibly empty). */
  encode(text) {
    const tokens = this.tokens(text);
    const n = Math.min(tokens.length, this.maxLen);
    const ids = new Array(n);
    for (let i = 0; i < n; i++) ids[i] = this.index.get(tokens[i]) ?? this.unkId;
    return ids;
  }
}

/** Right-pad id lists into a row-major BigInt64Array of at least one column. */
export function padIds(rows, padId = 0) {
  const width = rows.reduce((w, r) => Math.max(w, r.length), 1);
  const data = new BigInt64Array(rows.length * width).fill(BigInt(padId));
  rows.forEach((row, i) => row.forEach((id, j) => (data[i * width + j] = BigInt(id))));
  return { data, dims: [rows.length, width] };
}

export const UNICODE_VERSION = TABLES.version;
