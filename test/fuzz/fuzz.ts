/**
 * Seeded fuzzer for the loaders (issue "Hardening", item 1).
 *
 * Mutates valid inputs and checks that every case ends either in a result or in the loader's typed
 * error, never in another exception, a hang or unbounded memory:
 *
 *  - `safetensors`: mutated safetensors bytes -> temp file -> `SafetensorsFile.open` + `read()` of every
 *    tensor (typed error: `LoadError`).
 *  - `index`: mutated `model.safetensors.index.json` text -> `Checkpoint.open` on a model directory holding
 *    config.json and the two good shards of a 2-shard split of the tiny SmolVLM (`LoadError`).
 *  - `config`: mutated config.json text -> `JSON.parse` -> `parseIdefics3Config` / `parseLlavaConfig`
 *    (`ConfigError`; a JSON.parse error is the caller's case, counted as "rejected by JSON.parse"), and
 *    `Checkpoint.open` of a directory with that config.json, which must give a `LoadError` exactly when the
 *    text is not a JSON object.
 *
 * Every case is derived from (seed, case number) alone, so `--replay SEED:CASE` reruns one case.
 *
 *   npm run fuzz -- --cases 100000 [--seed N] [--target all|safetensors|index|config] [--replay SEED:CASE]
 *
 * Importable: `runFuzz({ cases, seed, targets })` returns a summary (see test/fuzz/fuzz.test.ts).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as v8 from 'node:v8';
import * as vm from 'node:vm';
import { performance } from 'node:perf_hooks';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { Checkpoint } from '../../src/io/checkpoint.ts';
import { ITEM_SIZE, isStDType } from '../../src/io/dtype.ts';
import { LoadError, SafetensorsFile } from '../../src/io/safetensors.ts';
import { writeSafetensors } from '../../src/io/safetensors-write.ts';
import type { StDType } from '../../src/io/safetensors.ts';
import { ConfigError, parseIdefics3Config, parseLlavaConfig } from '../../src/models/config.ts';

export type Target = 'safetensors' | 'index' | 'config';
export const ALL_TARGETS: readonly Target[] = ['safetensors', 'index', 'config'];

// ---------------------------------------------------------------------------------------------------
// Seeded PRNG (32-bit state, murmur3-style output mixing).

function mix32(x: number): number {
  let z = x >>> 0;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
  return (z ^ (z >>> 16)) >>> 0;
}

/** The PRNG seed of one case: a function of (run seed, case number) only. */
export function caseSeed(seed: number, caseNo: number): number {
  return mix32(mix32(seed >>> 0) ^ mix32(Math.imul(caseNo + 1, 0x9e3779b1) ^ 0x5bd1e995));
}

export class Rng {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0;
  }
  u32(): number {
    this.s = (this.s + 0x9e3779b9) >>> 0;
    return mix32(this.s);
  }
  float(): number {
    return this.u32() / 4294967296;
  }
  /** Integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.float() * n);
  }
  /** Integer in [lo, hi]. */
  between(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1);
  }
  bool(p = 0.5): boolean {
    return this.float() < p;
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)];
  }
  weighted<T>(xs: readonly (readonly [number, T])[]): T {
    let total = 0;
    for (const [w] of xs) total += w;
    let r = this.float() * total;
    for (const [w, v] of xs) {
      if ((r -= w) < 0) return v;
    }
    return xs[xs.length - 1][1];
  }
}

// ---------------------------------------------------------------------------------------------------
// JSON trees with raw literals and duplicate keys.

/** A literal spliced verbatim into the serialized JSON (numbers JS cannot hold, NaN, deep nesting...). */
class Raw {
  constructor(readonly text: string) {}
}
/** Extra [key, value, before] members of an object, emitted textually (duplicate keys). */
const DUPS = Symbol('dups');
type Dupable = { [DUPS]?: [string, unknown, boolean][] };
type Obj = Record<string, unknown>;

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Raw);
}

/** Set an own enumerable key (also "__proto__") without touching the prototype. */
function setKey(o: Obj, k: string, v: unknown): void {
  Object.defineProperty(o, k, { value: v, enumerable: true, writable: true, configurable: true });
}

function ser(v: unknown, indent = ''): string {
  if (v instanceof Raw) return v.text;
  if (v === undefined) return 'null';
  if (typeof v !== 'object' || v === null) return JSON.stringify(v) ?? 'null';
  const nl = indent ? '\n' + indent : '';
  const inner = indent ? indent + '  ' : '';
  if (Array.isArray(v)) return '[' + v.map((x) => ser(x, inner)).join(',') + ']';
  const parts: string[] = [];
  const dups = (v as Dupable)[DUPS] ?? [];
  const member = (k: string, x: unknown) => (inner ? '\n' + inner : '') + JSON.stringify(k) + ':' + ser(x, inner);
  for (const [k, x, before] of dups) if (before) parts.push(member(k, x));
  for (const [k, x] of Object.entries(v)) parts.push(member(k, x));
  for (const [k, x, before] of dups) if (!before) parts.push(member(k, x));
  return '{' + parts.join(',') + (parts.length ? nl : '') + '}';
}

/** All (container, key) slots of a tree, breadth first; Raw values are leaves. */
function slots(root: unknown, limit = 20000): { parent: Obj | unknown[]; key: string | number; path: string }[] {
  const out: { parent: Obj | unknown[]; key: string | number; path: string }[] = [];
  const queue: { v: unknown; path: string }[] = [{ v: root, path: '$' }];
  for (let qi = 0; qi < queue.length && out.length < limit; qi++) {
    const { v, path: p } = queue[qi];
    if (Array.isArray(v)) {
      v.forEach((x, i) => {
        out.push({ parent: v, key: i, path: `${p}[${i}]` });
        queue.push({ v: x, path: `${p}[${i}]` });
      });
    } else if (isObj(v)) {
      for (const [k, x] of Object.entries(v)) {
        const sub = `${p}.${k.length > 40 ? k.slice(0, 37) + '...' : k}`;
        out.push({ parent: v, key: k, path: sub });
        queue.push({ v: x, path: sub });
      }
    }
  }
  // An empty container still offers a slot to write into.
  if (out.length === 0 && isObj(root)) out.push({ parent: root, key: 'x', path: '$.x' });
  if (out.length === 0 && Array.isArray(root)) out.push({ parent: root, key: 0, path: '$[0]' });
  return out;
}

function setSlot(s: { parent: Obj | unknown[]; key: string | number }, v: unknown): void {
  if (Array.isArray(s.parent)) s.parent[s.key as number] = v;
  else setKey(s.parent, s.key as string, v);
}

function deleteSlot(s: { parent: Obj | unknown[]; key: string | number }): void {
  if (Array.isArray(s.parent)) s.parent.splice(s.key as number, 1);
  else delete s.parent[s.key as string];
}

function addDup(o: Obj, k: string, v: unknown, before: boolean): void {
  const d = o as Dupable;
  (d[DUPS] ??= []).push([k, v, before]);
}

// ---------------------------------------------------------------------------------------------------
// Hostile values.

const NUM_LITERALS = [
  '0', '-0', '1', '-1', '2', '3', '7', '1.5', '0.5', '-0.0', '1.0', '1e308', '-1e308', '1e400', '-1e400', '1e-400',
  '5e-324', '9007199254740991', '9007199254740992', '9007199254740993', '-9007199254740993', '18446744073709551615',
  '18446744073709551616', '4294967295', '4294967296', '2147483647', '2147483648', '1e21', '1E3', '1e+2',
  '123456789012345678901234567890', '1' + '0'.repeat(400),
];
/** Not valid JSON: NaN and friends spelled out, and other malformed numbers. */
const BAD_NUM_LITERALS = ['NaN', '-NaN', 'Infinity', '-Infinity', '+1', '01', '0x10', '.5', '1.', '1e', '--1', '1_000', 'nan', 'inf'];
const EVIL_STRINGS = [
  '', ' ', 'F32', 'f32', 'F16', 'BF16', 'I64', 'F64', 'U16', 'U32', 'F8_E4M3', 'BOOL', 'NaN', 'Infinity', '-1', '0', '1e308',
  '__proto__', 'constructor', 'toString', '__metadata__', '\u0000', 'a\u0000b', '\ud800', '\udfff', '\ufeff', 'é', '🙂',
  '../x', '/etc/passwd', 'null', 'true', '[]', '{}', 'idefics3', 'llava', 'llama', 'clip_vision_model', 'silu', 'gelu',
];
const EVIL_NAMES = [
  '', ' ', '__metadata__', '__proto__', 'constructor', 'hasOwnProperty', 'toString', 'valueOf', '\u0000', 'a\u0000b',
  '\ud800', '🙂', 'é', '.', '..', '../x', 'a/b', 'x'.repeat(300), 'weight', '0', '-1', 'NaN',
];
/** Nesting depths with weights (the deepest parse in ~0.5 s on a slow machine, so they are rarer). */
const DEPTHS: readonly (readonly [number, number])[] = [
  [3, 2], [3, 10], [3, 100], [4, 1000], [4, 5000], [4, 20000], [1, 100000], [0.5, 300000],
];

function numLiteral(rng: Rng): Raw {
  if (rng.bool(0.25)) return new Raw(String(rng.pick([rng.u32(), rng.u32() * 2 ** 21 + rng.int(2 ** 21), -rng.u32(), rng.float() * 1e6])));
  return new Raw(rng.pick(NUM_LITERALS));
}

function deepNest(rng: Rng, maxDepth = 300000): { value: Raw; desc: string } {
  const depth = rng.weighted(DEPTHS.filter(([, d]) => d <= maxDepth));
  const kind = rng.int(5);
  let text: string;
  let what: string;
  switch (kind) {
    case 0:
      text = '['.repeat(depth) + ']'.repeat(depth);
      what = 'arrays';
      break;
    case 1:
      text = '{"a":'.repeat(depth) + '0' + '}'.repeat(depth);
      what = 'objects';
      break;
    case 2: {
      const h = Math.max(1, depth >> 1);
      text = '[{"k":'.repeat(h) + '1' + '}]'.repeat(h);
      what = 'mixed';
      break;
    }
    case 3:
      text = '['.repeat(depth) + '1' + ']'.repeat(depth);
      what = 'arrays around 1';
      break;
    default:
      text = '['.repeat(depth);
      what = 'unclosed arrays';
  }
  return { value: new Raw(text), desc: `deep ${what} x${depth}` };
}

function longString(rng: Rng): { value: Raw; desc: string } {
  const n = rng.pick([256, 4096, 65536, 500000, 2000000]);
  const kind = rng.int(5);
  const unit = ['a', '\\u0000', '€', '\\ud800', '\\"'][kind];
  return { value: new Raw('"' + unit.repeat(Math.ceil(n / unit.length)) + '"'), desc: `long string ${JSON.stringify(unit)} x${n}` };
}

function evilScalar(rng: Rng): { value: unknown; desc: string } {
  switch (rng.weighted<number>([[6, 0], [1, 1], [4, 2], [1, 3], [1, 4]])) {
    case 0: {
      const r = numLiteral(rng);
      return { value: r, desc: r.text.length > 30 ? r.text.slice(0, 27) + '...' : r.text };
    }
    case 1: {
      const t = rng.pick(BAD_NUM_LITERALS);
      return { value: new Raw(t), desc: `${t} (invalid JSON)` };
    }
    case 2: {
      const s = rng.pick(EVIL_STRINGS);
      return { value: s, desc: JSON.stringify(s) };
    }
    case 3: {
      const b = rng.pick([true, false]);
      return { value: b, desc: String(b) };
    }
    default:
      return { value: null, desc: 'null' };
  }
}

function evilValue(rng: Rng, maxDepth = 300000): { value: unknown; desc: string } {
  switch (rng.weighted<number>([[10, 0], [3, 1], [2, 2], [1, 3], [1, 4]])) {
    case 0:
      return evilScalar(rng);
    case 1: {
      const c = rng.pick<[unknown, string]>([
        [[], '[]'],
        [{}, '{}'],
        [[1, 2], '[1,2]'],
        [[[1]], '[[1]]'],
        [{ a: 1 }, '{"a":1}'],
        [[new Raw('1e400'), new Raw('-1')], '[1e400,-1]'],
        [['0', '1'], '["0","1"]'],
        [[0, 0, 0], '[0,0,0]'],
        [[null], '[null]'],
      ]);
      return { value: c[0], desc: c[1] };
    }
    case 2:
      return deepNest(rng, maxDepth);
    case 3:
      return longString(rng);
    default: {
      const n = rng.pick([100, 1000, 10000, 50000]);
      const lit = rng.pick(['9007199254740991', '0', '1', '-1', '1e308', '2147483648']);
      return { value: new Raw('[' + Array(n).fill(lit).join(',') + ']'), desc: `array of ${n} x ${lit}` };
    }
  }
}

// ---------------------------------------------------------------------------------------------------
// Byte- and text-level mutations.

const enc = new TextEncoder();

function concat(...parts: Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of parts) n += p.byteLength;
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.byteLength;
  }
  return out;
}

const INTERESTING_BYTES = [0x00, 0xff, 0x7f, 0x80, 0xc0, 0x22, 0x5c, 0x7b, 0x7d, 0x5b, 0x5d, 0x2c, 0x3a, 0x2d, 0x2e, 0x65, 0x30, 0x39, 0x20, 0x0a];

/**
 * One byte-level mutation of `buf`. `hdrEnd` is where the structured part ends (the safetensors header,
 * or the whole text); positions are biased towards it. `st` enables the u64 length-prefix mutation.
 */
function byteMutation(rng: Rng, buf: Uint8Array, hdrEnd: number, st: boolean, cap: number): { buf: Uint8Array; desc: string } {
  const len = buf.byteLength;
  const he = Math.max(1, Math.min(hdrEnd, len));
  const pos = () => (len === 0 ? 0 : rng.bool(0.7) ? rng.int(he) : rng.int(len));
  const kind = rng.weighted<string>([
    [4, 'bitflip'],
    [3, 'overwrite'],
    [3, 'truncate'],
    [2, 'append'],
    [st ? 3 : 0, 'length'],
    [2, 'insert'],
    [2, 'delete'],
    [2, 'utf8'],
    [1, 'zero'],
  ]);
  switch (kind) {
    case 'bitflip': {
      const out = buf.slice();
      const k = rng.between(1, 8);
      const at: string[] = [];
      for (let i = 0; i < k && len > 0; i++) {
        const p = pos();
        const bit = rng.int(8);
        out[p] ^= 1 << bit;
        at.push(`${p}.${bit}`);
      }
      return { buf: out, desc: `bitflip ${at.join(',')}` };
    }
    case 'overwrite': {
      const out = buf.slice();
      const p = pos();
      const n = Math.min(rng.between(1, 16), Math.max(0, len - p));
      for (let i = 0; i < n; i++) out[p + i] = rng.bool() ? rng.pick(INTERESTING_BYTES) : rng.int(256);
      return { buf: out, desc: `overwrite ${n} bytes at ${p}` };
    }
    case 'truncate': {
      const where = rng.weighted<string>(
        st
          ? [[2, 'prefix'], [4, 'header'], [1, 'header-end'], [2, 'data'], [1, 'last']]
          : [[6, 'header'], [1, 'last']],
      );
      let at: number;
      if (where === 'prefix') at = rng.int(Math.min(8, len));
      else if (where === 'header') at = st ? Math.min(len, 8 + rng.int(Math.max(1, he - 8))) : rng.int(Math.max(1, len));
      else if (where === 'header-end') at = Math.max(0, he - rng.int(2));
      else if (where === 'data') at = he + rng.int(Math.max(1, len - he));
      else at = Math.max(0, len - 1);
      at = Math.min(at, len);
      return { buf: buf.slice(0, at), desc: `truncate to ${at} (${where})` };
    }
    case 'append': {
      const n = rng.pick([1, 7, 8, 64, 4096]);
      const style = rng.int(4);
      const g = new Uint8Array(n);
      for (let i = 0; i < n; i++) g[i] = style === 0 ? rng.int(256) : style === 1 ? 0x20 : style === 2 ? 0 : rng.pick(INTERESTING_BYTES);
      return { buf: concat(buf, g), desc: `append ${n} ${['random', 'space', 'zero', 'json-ish'][style]} bytes` };
    }
    case 'length': {
      const out = len >= 8 ? buf.slice() : concat(buf, new Uint8Array(8 - len));
      const dv = new DataView(out.buffer, out.byteOffset, out.byteLength);
      const cur = dv.getBigUint64(0, true);
      const size = BigInt(out.byteLength);
      const v = rng.pick<bigint>([
        0n, 1n, 2n, 7n, 8n, cur - 1n, cur + 1n, cur + 8n, cur * 2n, size - 8n, size - 7n, size, BigInt(cap), BigInt(cap) + 1n,
        2n ** 31n - 1n, 2n ** 31n, 2n ** 32n, 2n ** 53n - 1n, 2n ** 53n, 2n ** 53n + 1n, 2n ** 63n, 2n ** 64n - 1n,
        (BigInt(rng.u32()) << 32n) | BigInt(rng.u32()), BigInt(rng.u32()),
      ]);
      const val = BigInt.asUintN(64, v < 0n ? 0n : v);
      dv.setBigUint64(0, val, true);
      return { buf: out, desc: `length prefix = ${val}` };
    }
    case 'insert': {
      const p = pos();
      const n = rng.between(1, 64);
      const g = new Uint8Array(n);
      for (let i = 0; i < n; i++) g[i] = rng.bool() ? rng.pick(INTERESTING_BYTES) : rng.int(256);
      return { buf: concat(buf.subarray(0, p), g, buf.subarray(p)), desc: `insert ${n} bytes at ${p}` };
    }
    case 'delete': {
      const p = pos();
      const n = rng.between(1, 64);
      return { buf: concat(buf.subarray(0, p), buf.subarray(Math.min(len, p + n))), desc: `delete ${n} bytes at ${p}` };
    }
    case 'utf8': {
      const seqs: [number[], string][] = [
        [[0xff], 'ff'],
        [[0xc0, 0x80], 'overlong NUL'],
        [[0xed, 0xa0, 0x80], 'UTF-8 surrogate'],
        [[0xe2, 0x82], 'truncated 3-byte'],
        [[0x80], 'lone continuation'],
        [[0xf4, 0x90, 0x80, 0x80], 'above U+10FFFF'],
        [[0xef, 0xbb, 0xbf], 'BOM'],
      ];
      const [s, name] = rng.pick(seqs);
      const p = rng.bool(0.3) ? (st ? Math.min(8, len) : 0) : pos();
      const out = rng.bool() ? concat(buf.subarray(0, p), new Uint8Array(s), buf.subarray(p)) : buf.slice();
      if (out.byteLength === len) for (let i = 0; i < s.length && p + i < len; i++) out[p + i] = s[i];
      return { buf: out, desc: `${out.byteLength === len ? 'overwrite' : 'insert'} ${name} at ${p}` };
    }
    default: {
      const out = buf.slice();
      const p = pos();
      const n = Math.min(rng.pick([1, 8, 100, 4096]), Math.max(0, len - p));
      out.fill(0, p, p + n);
      return { buf: out, desc: `zero ${n} bytes at ${p}` };
    }
  }
}

const NUMBER_TOKEN = /-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?/g;
const STRING_TOKEN = /"(?:[^"\\]|\\.)*"/g;

/** Textual edits of serialized JSON: replace a number or string token, break the syntax. */
function textMutation(rng: Rng, text: string): { text: string; desc: string } {
  const kind = rng.weighted<string>([[4, 'number'], [2, 'string'], [1, 'syntax'], [1, 'ws']]);
  const tokens = (re: RegExp) => {
    const out: [number, number][] = [];
    re.lastIndex = 0;
    for (let m = re.exec(text); m !== null && out.length < 100000; m = re.exec(text)) out.push([m.index, m.index + m[0].length]);
    return out;
  };
  if (kind === 'number') {
    const toks = tokens(NUMBER_TOKEN);
    if (toks.length) {
      const [b, e] = rng.pick(toks);
      const lit = rng.bool(0.75) ? rng.pick(NUM_LITERALS) : rng.pick(BAD_NUM_LITERALS);
      return { text: text.slice(0, b) + lit + text.slice(e), desc: `number token ${text.slice(b, Math.min(e, b + 20))} -> ${lit.slice(0, 30)}` };
    }
  }
  if (kind === 'string') {
    const toks = tokens(STRING_TOKEN);
    if (toks.length) {
      const [b, e] = rng.pick(toks);
      const lit = rng.pick(['""', '"\\x"', '"\\u12"', '"\\ud800"', '"a\nb"', '"\\u0000"', JSON.stringify(rng.pick(EVIL_STRINGS)), '"', "'single'"]);
      return { text: text.slice(0, b) + lit + text.slice(e), desc: `string token ${text.slice(b, Math.min(e, b + 24))} -> ${lit}` };
    }
  }
  if (kind === 'syntax') {
    const p = rng.int(text.length + 1);
    const s = rng.pick([',', ',,', ':', '{', '}', '[', ']', '"', '//x\n', '/* */', 'undefined', 'true', '\\']);
    return { text: text.slice(0, p) + s + text.slice(p), desc: `insert ${JSON.stringify(s)} at ${p}` };
  }
  const p = rng.int(text.length + 1);
  const s = rng.pick([' ', '\t', '\n', '\r\n', '\u00a0', '\u2028', '\ufeff', ' '.repeat(1000)]);
  return { text: text.slice(0, p) + s + text.slice(p), desc: `insert whitespace ${JSON.stringify(s.length > 8 ? `${s.length} spaces` : s)} at ${p}` };
}

// ---------------------------------------------------------------------------------------------------
// Seeds and the temp directory.

const FIXTURES = fileURLToPath(new URL('../fixtures/', import.meta.url));
const ST_SEED_FILES = [
  'smolvlm-tiny/model.safetensors',
  'smolvlm-tiny-f16/model.safetensors',
  'smolvlm-tiny-bf16/model.safetensors',
  'llava-tiny/model.safetensors',
];
const CONFIG_SEED_FILES = ['smolvlm-tiny/config.json', 'smolvlm-tiny-f16/config.json', 'smolvlm-tiny-bf16/config.json', 'llava-tiny/config.json'];
const SHARDS = ['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors'];
const INDEX_FILE = 'model.safetensors.index.json';

interface StSeed {
  name: string;
  bytes: Uint8Array;
  headerLength: number;
  headerText: string;
  data: Uint8Array;
}

interface ConfigSeed {
  name: string;
  text: string;
  parser: 'idefics3' | 'llava';
}

export interface Ctx {
  tmp: string;
  stPath: string;
  idxDir: string;
  cfgDir: string;
  cap: number;
  stSeeds: StSeed[];
  indexText: string;
  indexTensors: string[];
  configSeeds: ConfigSeed[];
}

function stSeed(name: string, bytes: Uint8Array): StSeed {
  const n = Number(new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true));
  return {
    name,
    bytes,
    headerLength: n,
    headerText: new TextDecoder().decode(bytes.subarray(8, 8 + n)),
    data: bytes.subarray(8 + n),
  };
}

/** Temp dirs of runs in progress (removed by the CLI on SIGINT/SIGTERM). */
const liveTmpDirs = new Set<string>();

export async function setup(cap: number): Promise<Ctx> {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vlm-fuzz-'));
  liveTmpDirs.add(tmp);
  try {
    const stSeeds = ST_SEED_FILES.map((f) => stSeed(f, new Uint8Array(fs.readFileSync(path.join(FIXTURES, f)))));

    // The 2-shard split of the tiny SmolVLM, written once.
    const idxDir = path.join(tmp, 'sharded');
    fs.mkdirSync(path.join(idxDir, 'sub'), { recursive: true });
    fs.copyFileSync(path.join(FIXTURES, 'smolvlm-tiny/config.json'), path.join(idxDir, 'config.json'));
    const src = await SafetensorsFile.open(path.join(FIXTURES, ST_SEED_FILES[0]));
    const all: { name: string; dtype: StDType; shape: number[]; data: Uint8Array }[] = [];
    try {
      const infos = [...src.tensors.values()].sort((a, b) => a.begin - b.begin);
      for (const t of infos) all.push({ name: t.name, dtype: t.dtype, shape: t.shape, data: await src.read(t.name) });
    } finally {
      await src.close();
    }
    const half = Math.ceil(all.length / 2);
    const parts = [all.slice(0, half), all.slice(half)];
    const weightMap: Record<string, string> = {};
    let total = 0;
    parts.forEach((ts, i) => {
      writeSafetensors(path.join(idxDir, SHARDS[i]), ts, { format: 'pt' });
      for (const t of ts) {
        weightMap[t.name] = SHARDS[i];
        total += t.data.byteLength;
      }
    });
    const sorted = Object.fromEntries(Object.entries(weightMap).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
    const indexText = JSON.stringify({ metadata: { total_size: total }, weight_map: sorted }, null, 2);
    fs.writeFileSync(path.join(idxDir, INDEX_FILE), indexText);
    // Sanity: the unmutated split must load.
    const ck = await Checkpoint.open(idxDir, { maxHeaderBytes: cap });
    await ck.close();
    for (const s of SHARDS) stSeeds.push(stSeed(`sharded/${s}`, new Uint8Array(fs.readFileSync(path.join(idxDir, s)))));

    // Directory for the config.json check through Checkpoint.open: one tiny single-file checkpoint.
    const cfgDir = path.join(tmp, 'config');
    fs.mkdirSync(cfgDir);
    writeSafetensors(path.join(cfgDir, 'model.safetensors'), [{ name: 'w', dtype: 'F32', shape: [2], data: new Uint8Array(8) }]);

    const configSeeds = CONFIG_SEED_FILES.map((f): ConfigSeed => {
      const text = fs.readFileSync(path.join(FIXTURES, f), 'utf8');
      const type = (JSON.parse(text) as { model_type?: unknown }).model_type;
      return { name: f, text, parser: type === 'llava' ? 'llava' : 'idefics3' };
    });
    return {
      tmp,
      stPath: path.join(tmp, 'fuzz.safetensors'),
      idxDir,
      cfgDir,
      cap,
      stSeeds,
      indexText,
      indexTensors: Object.keys(sorted),
      configSeeds,
    };
  } catch (e) {
    removeTmp(tmp);
    throw e;
  }
}

function removeTmp(tmp: string): void {
  fs.rmSync(tmp, { recursive: true, force: true });
  liveTmpDirs.delete(tmp);
}

// ---------------------------------------------------------------------------------------------------
// Structure-aware mutations.

export interface Mutated {
  bytes: Uint8Array;
  seed: string;
  ops: string[];
  parser?: 'idefics3' | 'llava';
}

const DTYPES = Object.keys(ITEM_SIZE) as StDType[];

function tensorKeys(h: Obj): string[] {
  return Object.keys(h).filter((k) => k !== '__metadata__');
}

function entryOf(h: Obj, k: string): Obj | undefined {
  const e = h[k];
  return isObj(e) ? e : undefined;
}

function offsetsOf(e: Obj | undefined): [number, number] | undefined {
  const o = e?.data_offsets;
  if (Array.isArray(o) && o.length === 2 && typeof o[0] === 'number' && typeof o[1] === 'number') return [o[0], o[1]];
  return undefined;
}

/** One structural edit of a parsed safetensors header. Returns the (possibly replaced) root and a description. */
function headerMutation(rng: Rng, root: unknown, dataLength: number): { root: unknown; desc: string } {
  if (!isObj(root)) {
    const v = evilValue(rng);
    return { root: v.value, desc: `root = ${v.desc}` };
  }
  const h = root;
  const names = tensorKeys(h);
  const t = names.length ? rng.pick(names) : '';
  const e = entryOf(h, t);
  const tn = JSON.stringify(t.length > 40 ? t.slice(0, 37) + '...' : t);
  const kind = rng.weighted<string>([
    [6, 'field'],
    [2, 'del-field'],
    [3, 'dtype'],
    [4, 'shape'],
    [3, 'shape-long'],
    [5, 'offsets'],
    [3, 'overlap'],
    [2, 'remove'],
    [3, 'add'],
    [2, 'rename'],
    [2, 'metadata'],
    [1, 'root'],
    [3, 'dup-key'],
    [3, 'deep'],
    [2, 'long-string'],
    [1, 'many'],
    [3, 'generic'],
    [1, 'entry'],
  ]);
  if (!e && ['field', 'del-field', 'dtype', 'shape', 'shape-long', 'offsets', 'overlap'].includes(kind)) {
    const v = evilValue(rng);
    if (names.length) setKey(h, t, v.value);
    else setKey(h, 'x', v.value);
    return { root: h, desc: `tensor ${tn} entry = ${v.desc}` };
  }
  switch (kind) {
    case 'field': {
      const f = rng.pick(['dtype', 'shape', 'data_offsets']);
      const v = evilValue(rng);
      setKey(e!, f, v.value);
      return { root: h, desc: `${tn}.${f} = ${v.desc}` };
    }
    case 'del-field': {
      const f = rng.pick(['dtype', 'shape', 'data_offsets']);
      delete e![f];
      return { root: h, desc: `delete ${tn}.${f}` };
    }
    case 'dtype': {
      const d = rng.bool(0.6) ? rng.pick(DTYPES) : rng.pick(['f32', 'F64', 'U16', 'U32', 'U64', 'I16', 'F8_E4M3', 'bf16', 'float32', '', ' F32']);
      setKey(e!, 'dtype', d);
      return { root: h, desc: `${tn}.dtype = ${JSON.stringify(d)}` };
    }
    case 'shape': {
      const shape = Array.isArray(e!.shape) ? (e!.shape as unknown[]).slice() : [];
      const op = rng.int(8);
      let desc: string;
      if (op === 0 && shape.length) {
        const i = rng.int(shape.length);
        const v = rng.bool() ? numLiteral(rng) : new Raw(String(rng.pick([0, 1, 2, (shape[i] as number) + 1, (shape[i] as number) - 1])));
        shape[i] = v;
        desc = `${tn}.shape[${i}] = ${v.text.slice(0, 30)}`;
      } else if (op === 1) {
        shape.push(rng.pick([1, 1, 2, 0]));
        desc = `${tn}.shape push ${String(shape[shape.length - 1])}`;
      } else if (op === 2 && shape.length) {
        shape.pop();
        desc = `${tn}.shape pop`;
      } else if (op === 3) {
        shape.reverse();
        desc = `${tn}.shape reversed`;
      } else if (op === 4) {
        shape.length = 0;
        desc = `${tn}.shape = []`;
      } else if (op === 5 && shape.length) {
        const i = rng.int(shape.length);
        shape.splice(i, 0, 1, 1);
        desc = `${tn}.shape insert 1,1 at ${i}`;
      } else if (op === 6) {
        shape.unshift(0);
        desc = `${tn}.shape unshift 0`;
      } else {
        const i = rng.int(shape.length + 1);
        shape[i] = new Raw(rng.pick(['1.0', '1e0', '-0', '0.5', '"2"', 'null', 'true']));
        desc = `${tn}.shape[${i}] = ${(shape[i] as Raw).text}`;
      }
      setKey(e!, 'shape', shape);
      return { root: h, desc };
    }
    case 'shape-long': {
      // Long shapes: many ones (valid), huge dims (product far beyond 2^64), or huge dims ending in 0.
      const n = rng.pick([100, 1000, 5000, 20000, 55000]);
      const mode = rng.int(4);
      const huge = () => rng.pick([9007199254740991, 4294967296, 2147483647, 2 ** 52 + rng.int(2 ** 20)]);
      const orig = Array.isArray(e!.shape) ? (e!.shape as unknown[]) : [];
      let shape: unknown[];
      if (mode === 0) shape = [...Array(n).fill(1), ...orig];
      else if (mode === 1) shape = Array.from({ length: n }, huge);
      else if (mode === 2) shape = [...Array.from({ length: n }, huge), 0];
      else shape = [0, ...Array.from({ length: n }, huge)];
      if (mode >= 2) setKey(e!, 'data_offsets', [0, 0]);
      setKey(e!, 'shape', shape);
      return { root: h, desc: `${tn}.shape = ${['ones + original', 'huge dims', 'huge dims then 0 (offsets [0,0])', '0 then huge dims (offsets [0,0])'][mode]} (length ${shape.length})` };
    }
    case 'offsets': {
      const o = Array.isArray(e!.data_offsets) ? (e!.data_offsets as unknown[]).slice() : [0, 0];
      const b = typeof o[0] === 'number' ? o[0] : 0;
      const en = typeof o[1] === 'number' ? o[1] : 0;
      const op = rng.int(9);
      let v: unknown[];
      let desc: string;
      if (op === 0) (v = [en, b]), (desc = 'swap begin/end');
      else if (op === 1) {
        const d = rng.pick([1, -1, 4, -4, 8, -8]);
        v = [b + d, en + d];
        desc = `shift by ${d}`;
      } else if (op === 2) (v = [b, b]), (desc = 'end = begin');
      else if (op === 3) {
        const x = dataLength + rng.pick([0, 1, 4, 1 << 20]);
        v = [x - (en - b), x];
        desc = `move to end at ${x}`;
      } else if (op === 4) {
        const i = rng.int(2);
        v = o.slice();
        const lit = numLiteral(rng);
        v[i] = lit;
        desc = `[${i}] = ${lit.text.slice(0, 30)}`;
      } else if (op === 5) {
        v = rng.pick([[], [b], [b, en, en], [String(b), String(en)], [b + 0.5, en + 0.5], [new Raw(`${b}.0`), new Raw(`${en}.0`)]]);
        desc = `= ${ser(v).slice(0, 40)}`;
      } else if (op === 6) {
        v = [b, en + rng.pick([1, -1, 2, ITEM_SIZE.F32])];
        desc = 'resize end';
      } else if (op === 7) {
        v = [b - rng.pick([1, 2, 4]), en];
        desc = 'resize begin';
      } else {
        v = [new Raw('-1'), new Raw(String(en))];
        desc = 'begin = -1';
      }
      setKey(e!, 'data_offsets', v);
      return { root: h, desc: `${tn}.data_offsets ${desc}` };
    }
    case 'overlap': {
      const other = names.filter((n) => n !== t && entryOf(h, n));
      if (!other.length) return { root: h, desc: 'overlap: no other tensor' };
      const u = rng.pick(other);
      const eu = entryOf(h, u)!;
      const ot = offsetsOf(e);
      const ou = offsetsOf(eu);
      const un = JSON.stringify(u.length > 40 ? u.slice(0, 37) + '...' : u);
      const op = rng.int(3);
      if (op === 0 && ot && ou) {
        // Swap the two spans and their dtypes/shapes' offsets: valid when sizes agree, else size mismatch.
        setKey(e!, 'data_offsets', [ou[0], ou[1]]);
        setKey(eu, 'data_offsets', [ot[0], ot[1]]);
        return { root: h, desc: `swap data_offsets of ${tn} and ${un}` };
      }
      if (op === 1 && ou) {
        const shift = ot ? ot[1] - ot[0] : 0;
        setKey(e!, 'data_offsets', [ou[0], ou[0] + shift]);
        return { root: h, desc: `${tn} starts where ${un} starts (overlap)` };
      }
      if (ou && ot) {
        const mid = ou[0] + Math.floor((ou[1] - ou[0]) / 2);
        setKey(e!, 'data_offsets', [mid, mid + (ot[1] - ot[0])]);
        return { root: h, desc: `${tn} starts inside ${un} at ${mid}` };
      }
      return { root: h, desc: 'overlap: no offsets' };
    }
    case 'remove': {
      if (names.length) delete h[t];
      return { root: h, desc: `remove tensor ${tn}` };
    }
    case 'add': {
      const name = rng.bool(0.7) ? rng.pick(EVIL_NAMES) : `extra.${rng.int(1000)}`;
      const op = rng.int(4);
      let v: unknown;
      let desc: string;
      if (op === 0) (v = { dtype: 'F32', shape: [0], data_offsets: [0, 0] }), (desc = 'zero-size F32 [0]');
      else if (op === 1 && e) (v = structuredClone({ ...e })), (desc = `copy of ${tn}`);
      else if (op === 2) (v = { dtype: 'U8', shape: [1], data_offsets: [dataLength, dataLength + 1] }), (desc = 'one byte past the data');
      else {
        const ev = evilValue(rng);
        v = ev.value;
        desc = ev.desc;
      }
      if (name === '__metadata__' && op < 3) v = rng.bool() ? { format: 'pt', extra: v } : v;
      setKey(h, name, v);
      return { root: h, desc: `add tensor ${JSON.stringify(name.slice(0, 40))} = ${desc}` };
    }
    case 'rename': {
      const name = rng.pick(EVIL_NAMES);
      if (names.length && e) {
        delete h[t];
        setKey(h, name, e);
      }
      return { root: h, desc: `rename ${tn} -> ${JSON.stringify(name.slice(0, 40))}` };
    }
    case 'metadata': {
      const op = rng.int(5);
      if (op === 0) {
        const v = evilValue(rng);
        setKey(h, '__metadata__', v.value);
        return { root: h, desc: `__metadata__ = ${v.desc}` };
      }
      if (op === 1) {
        delete h.__metadata__;
        return { root: h, desc: 'delete __metadata__' };
      }
      const m = isObj(h.__metadata__) ? h.__metadata__ : {};
      setKey(h, '__metadata__', m);
      if (op === 2) {
        const v = evilValue(rng);
        setKey(m, rng.pick(['format', 'x', '__proto__', '']), v.value);
        return { root: h, desc: `__metadata__ member = ${v.desc}` };
      }
      if (op === 3) {
        const n = rng.pick([10, 1000, 20000]);
        for (let i = 0; i < n; i++) setKey(m, `k${i}`, `v${i}`);
        return { root: h, desc: `__metadata__ with ${n} extra keys` };
      }
      const s = longString(rng);
      setKey(m, 'long', s.value);
      return { root: h, desc: `__metadata__.long = ${s.desc}` };
    }
    case 'root': {
      const v = evilValue(rng);
      return { root: v.value, desc: `root = ${v.desc}` };
    }
    case 'dup-key': {
      const before = rng.bool();
      if (rng.bool() && e) {
        const f = rng.pick(['dtype', 'shape', 'data_offsets']);
        const v = rng.bool() ? evilScalar(rng) : { value: f === 'dtype' ? rng.pick(DTYPES) : [0, 0], desc: 'plausible' };
        addDup(e, f, v.value, before);
        return { root: h, desc: `duplicate key ${tn}.${f} = ${v.desc} (${before ? 'before' : 'after'})` };
      }
      const other = names.length ? entryOf(h, rng.pick(names)) : undefined;
      const v = other && rng.bool() ? other : { dtype: 'F32', shape: [1], data_offsets: [0, 4] };
      addDup(h, t || 'x', v, before);
      return { root: h, desc: `duplicate tensor key ${tn} (${before ? 'before, overridden' : 'after, wins'})` };
    }
    case 'deep': {
      const all = slots(h);
      const s = rng.pick(all);
      const v = deepNest(rng);
      setSlot(s, v.value);
      return { root: h, desc: `${s.path} = ${v.desc}` };
    }
    case 'long-string': {
      const s = longString(rng);
      const op = rng.int(3);
      if (op === 0 && e) {
        setKey(e, 'dtype', s.value);
        return { root: h, desc: `${tn}.dtype = ${s.desc}` };
      }
      if (op === 1 && e) {
        delete h[t];
        const n = rng.pick([1000, 100000, 2000000]);
        setKey(h, t + 'x'.repeat(n), e);
        return { root: h, desc: `rename ${tn} to a ${n + t.length}-char name` };
      }
      setKey(h, 'x', s.value);
      return { root: h, desc: `tensor "x" = ${s.desc}` };
    }
    case 'many': {
      const n = rng.pick([1000, 5000, 20000]);
      const zero = rng.bool(0.7);
      for (let i = 0; i < n; i++) setKey(h, `z.${i}`, zero ? { dtype: 'F32', shape: [0], data_offsets: [0, 0] } : { dtype: 'U8', shape: [1], data_offsets: [i, i + 1] });
      return { root: h, desc: `add ${n} ${zero ? 'zero-size' : 'overlapping 1-byte'} tensors` };
    }
    case 'entry': {
      const v = evilValue(rng);
      setKey(h, t || 'x', v.value);
      return { root: h, desc: `tensor ${tn} entry = ${v.desc}` };
    }
    default: {
      const all = slots(h);
      const s = rng.pick(all);
      if (rng.bool(0.2)) {
        deleteSlot(s);
        return { root: h, desc: `delete ${s.path}` };
      }
      const v = evilValue(rng);
      setSlot(s, v.value);
      return { root: h, desc: `${s.path} = ${v.desc}` };
    }
  }
}

function mutateSafetensors(rng: Rng, ctx: Ctx): Mutated {
  const seed = rng.pick(ctx.stSeeds);
  const ops: string[] = [];
  const structural = rng.bool(0.65) ? rng.weighted<number>([[6, 1], [3, 2], [1, 3]]) : 0;
  let bytes = seed.bytes;
  let hdrEnd = 8 + seed.headerLength;
  if (structural > 0) {
    let root: unknown = JSON.parse(seed.headerText);
    for (let i = 0; i < structural; i++) {
      const r = headerMutation(rng, root, seed.data.byteLength);
      root = r.root;
      ops.push(r.desc);
    }
    let text = ser(root);
    if (rng.bool(0.15)) {
      const t = textMutation(rng, text);
      text = t.text;
      ops.push(t.desc);
    }
    let hb: Uint8Array = enc.encode(text);
    const pad = rng.weighted<string>([[7, 'spaces'], [2, 'none'], [1, 'odd']]);
    if (pad === 'spaces' && hb.length % 8) hb = concat(hb, new Uint8Array(8 - (hb.length % 8)).fill(0x20));
    else if (pad === 'odd') {
      const filler = rng.pick([0x00, 0x0a, 0x09, 0x78]);
      hb = concat(hb, new Uint8Array(rng.between(1, 9)).fill(filler));
      ops.push(`pad header with 0x${filler.toString(16)}`);
    }
    const prefix = new Uint8Array(8);
    new DataView(prefix.buffer).setBigUint64(0, BigInt(hb.length), true);
    bytes = concat(prefix, hb, seed.data);
    hdrEnd = 8 + hb.length;
  }
  const byteOps = structural === 0 ? rng.weighted<number>([[6, 1], [3, 2], [1, 3]]) : rng.bool(0.2) ? 1 : 0;
  for (let i = 0; i < byteOps; i++) {
    const r = byteMutation(rng, bytes, hdrEnd, true, ctx.cap);
    bytes = r.buf;
    ops.push(r.desc);
  }
  return { bytes, seed: seed.name, ops };
}

const EVIL_SHARDS = [
  '', '.', '..', './', '../x.safetensors', '/etc/passwd', 'C:\\x.safetensors', '\\\\server\\share\\x', 'a\u0000b', 'config.json',
  INDEX_FILE, 'sub', 'sub/', 'missing.safetensors', 'x'.repeat(300), ('d'.repeat(200) + '/').repeat(25) + 'x', `./${SHARDS[0]}`,
  `sub/../${SHARDS[1]}`, `${SHARDS[0]}/`, `${SHARDS[0]}/.`, ` ${SHARDS[0]}`, `${SHARDS[0]}\n`, `../sharded/${SHARDS[0]}`, '~/x',
  '%2e%2e/x', SHARDS[0].toUpperCase(), '🙂.safetensors', 'sub/x.safetensors',
];

function indexMutation(rng: Rng, root: unknown, tensors: string[]): { root: unknown; desc: string } {
  if (!isObj(root)) {
    const v = evilValue(rng);
    return { root: v.value, desc: `root = ${v.desc}` };
  }
  const wm = isObj(root.weight_map) ? root.weight_map : undefined;
  const kind = rng.weighted<string>([
    [6, 'remap'],
    [3, 'delete'],
    [3, 'add'],
    [2, 'rename'],
    [2, 'wm-type'],
    [1, 'wm-remove'],
    [2, 'metadata'],
    [1, 'root'],
    [3, 'dup-key'],
    [2, 'deep'],
    [2, 'long'],
    [1, 'many'],
    [3, 'generic'],
  ]);
  const keys = wm ? Object.keys(wm) : [];
  const t = keys.length ? rng.pick(keys) : tensors[0];
  const tn = JSON.stringify(t.length > 40 ? t.slice(0, 37) + '...' : t);
  if (!wm && ['remap', 'delete', 'add', 'rename', 'dup-key', 'long', 'many'].includes(kind)) {
    const v = evilValue(rng);
    setKey(root, 'weight_map', v.value);
    return { root, desc: `weight_map = ${v.desc}` };
  }
  switch (kind) {
    case 'remap': {
      const op = rng.int(3);
      if (op === 0) {
        const cur = wm![t];
        const other = cur === SHARDS[0] ? SHARDS[1] : SHARDS[0];
        setKey(wm!, t, other);
        return { root, desc: `weight_map[${tn}] = ${other} (wrong shard)` };
      }
      if (op === 1) {
        const s = rng.pick(EVIL_SHARDS);
        setKey(wm!, t, s);
        return { root, desc: `weight_map[${tn}] = ${JSON.stringify(s.length > 40 ? s.slice(0, 37) + '...' : s)}` };
      }
      const v = evilScalar(rng);
      setKey(wm!, t, v.value);
      return { root, desc: `weight_map[${tn}] = ${v.desc}` };
    }
    case 'delete':
      delete wm![t];
      return { root, desc: `delete weight_map[${tn}]` };
    case 'add': {
      const name = rng.bool() ? rng.pick(EVIL_NAMES) : `extra.${rng.int(100)}`;
      const shard = rng.bool(0.7) ? rng.pick(SHARDS) : rng.pick(EVIL_SHARDS);
      setKey(wm!, name, shard);
      return { root, desc: `add weight_map[${JSON.stringify(name.slice(0, 40))}] = ${JSON.stringify(shard.slice(0, 40))}` };
    }
    case 'rename': {
      const name = rng.pick(EVIL_NAMES);
      const v = wm![t];
      delete wm![t];
      setKey(wm!, name, v);
      return { root, desc: `rename weight_map key ${tn} -> ${JSON.stringify(name.slice(0, 40))}` };
    }
    case 'wm-type': {
      const v = evilValue(rng);
      setKey(root, 'weight_map', v.value);
      return { root, desc: `weight_map = ${v.desc}` };
    }
    case 'wm-remove':
      delete root.weight_map;
      return { root, desc: 'delete weight_map' };
    case 'metadata': {
      const v = evilValue(rng);
      if (rng.bool() && isObj(root.metadata)) {
        setKey(root.metadata, 'total_size', v.value);
        return { root, desc: `metadata.total_size = ${v.desc}` };
      }
      setKey(root, 'metadata', v.value);
      return { root, desc: `metadata = ${v.desc}` };
    }
    case 'root': {
      const v = evilValue(rng);
      return { root: v.value, desc: `root = ${v.desc}` };
    }
    case 'dup-key': {
      const before = rng.bool();
      if (rng.bool()) {
        const s = rng.bool() ? rng.pick(SHARDS) : rng.pick(EVIL_SHARDS);
        addDup(wm!, t, s, before);
        return { root, desc: `duplicate key weight_map[${tn}] = ${JSON.stringify(s.slice(0, 40))} (${before ? 'before' : 'after'})` };
      }
      const v = rng.bool() ? { [t]: SHARDS[0] } : evilValue(rng).value;
      addDup(root, 'weight_map', v, before);
      return { root, desc: `duplicate key weight_map (${before ? 'before, overridden' : 'after, wins'})` };
    }
    case 'deep': {
      const s = rng.pick(slots(root));
      const v = deepNest(rng);
      setSlot(s, v.value);
      return { root, desc: `${s.path} = ${v.desc}` };
    }
    case 'long': {
      const n = rng.pick([256, 4096, 100000]);
      if (rng.bool()) {
        setKey(wm!, t, 'x'.repeat(n));
        return { root, desc: `weight_map[${tn}] = ${n}-char shard name` };
      }
      const v = wm![t];
      delete wm![t];
      setKey(wm!, t + 'y'.repeat(n), v);
      return { root, desc: `rename ${tn} to a ${n + t.length}-char name` };
    }
    case 'many': {
      const n = rng.pick([1000, 10000]);
      const distinct = rng.bool();
      for (let i = 0; i < n; i++) setKey(wm!, `ghost.${i}`, distinct ? `ghost-${i}.safetensors` : SHARDS[i % 2]);
      return { root, desc: `add ${n} entries for absent tensors (${distinct ? 'distinct missing shards' : 'existing shards'})` };
    }
    default: {
      const s = rng.pick(slots(root));
      if (rng.bool(0.2)) {
        deleteSlot(s);
        return { root, desc: `delete ${s.path}` };
      }
      const v = evilValue(rng);
      setSlot(s, v.value);
      return { root, desc: `${s.path} = ${v.desc}` };
    }
  }
}

function mutateIndex(rng: Rng, ctx: Ctx): Mutated {
  return mutateJsonText(rng, ctx.indexText, ctx.cap, (r, root) => indexMutation(r, root, ctx.indexTensors), 'generated 2-shard index');
}

const NUMERIC_CONFIG_KEYS = [
  'hidden_size', 'intermediate_size', 'num_hidden_layers', 'num_attention_heads', 'num_key_value_heads', 'head_dim', 'patch_size',
  'image_size', 'num_channels', 'vocab_size', 'max_position_embeddings', 'rms_norm_eps', 'layer_norm_eps', 'rope_theta',
  'scale_factor', 'image_token_id', 'image_token_index', 'vision_feature_layer', 'bos_token_id', 'eos_token_id',
];

function configMutation(rng: Rng, root: unknown): { root: unknown; desc: string } {
  if (!isObj(root)) {
    const v = evilValue(rng);
    return { root: v.value, desc: `root = ${v.desc}` };
  }
  const all = slots(root);
  const numeric = all.filter((s) => NUMERIC_CONFIG_KEYS.includes(String(s.key)));
  const strings = all.filter((s) => typeof (s.parent as Obj)[s.key as string] === 'string' && !Array.isArray(s.parent));
  const kind = rng.weighted<string>([
    [6, 'generic'],
    [5, 'small-int'],
    [3, 'delete'],
    [2, 'required'],
    [2, 'sub-type'],
    [2, 'model-type'],
    [2, 'nan'],
    [2, 'huge'],
    [3, 'deep'],
    [3, 'dup-key'],
    [2, 'rope'],
    [2, 'ids'],
    [1, 'root'],
    [1, 'long-string'],
    [2, 'feature-layer'],
  ]);
  switch (kind) {
    case 'small-int': {
      const s = rng.pick(numeric.length ? numeric : all);
      const v = rng.pick([0, 1, 2, 3, 4, 5, 6, 8, 12, 16, 17, 32, 48, 64, -1, -2, -3, 1.5, rng.int(200)]);
      setSlot(s, v);
      return { root, desc: `${s.path} = ${v}` };
    }
    case 'delete': {
      const s = rng.pick(all);
      deleteSlot(s);
      return { root, desc: `delete ${s.path}` };
    }
    case 'required': {
      const k = rng.pick(['model_type', 'vision_config', 'text_config']);
      delete root[k];
      return { root, desc: `delete ${k}` };
    }
    case 'sub-type': {
      const k = rng.pick(['vision_config', 'text_config']);
      const v = evilValue(rng);
      setKey(root, k, v.value);
      return { root, desc: `${k} = ${v.desc}` };
    }
    case 'model-type': {
      const v = rng.pick(['llava', 'idefics3', 'IDEFICS3', '', 'llama', 'smolvlm', 'idefics3 ', null, 3]);
      if (rng.bool(0.3) && isObj(root.vision_config)) {
        const vv = rng.pick(['siglip_vision_model', 'clip_vision_model', '', null, 1]);
        setKey(root.vision_config, 'model_type', vv);
        return { root, desc: `vision_config.model_type = ${JSON.stringify(vv)}` };
      }
      setKey(root, 'model_type', v);
      return { root, desc: `model_type = ${JSON.stringify(v)}` };
    }
    case 'nan': {
      const s = rng.pick(numeric.length ? numeric : all);
      const t = rng.pick(['NaN', 'Infinity', '-Infinity']);
      setSlot(s, rng.bool(0.8) ? new Raw(t) : t);
      return { root, desc: `${s.path} = ${t} (spelled out)` };
    }
    case 'huge': {
      const s = rng.pick(numeric.length ? numeric : all);
      const lit = rng.pick(['1e308', '1e400', '-1e400', '9007199254740993', '9007199254740992', '1e21', '4294967296', '18446744073709551616', '5e-324', '1e-400']);
      setSlot(s, new Raw(lit));
      return { root, desc: `${s.path} = ${lit}` };
    }
    case 'deep': {
      const s = rng.pick(all);
      const v = deepNest(rng);
      setSlot(s, v.value);
      return { root, desc: `${s.path} = ${v.desc}` };
    }
    case 'dup-key': {
      const objs = [root, root.vision_config, root.text_config].filter(isObj);
      const o = rng.pick(objs);
      const keys = Object.keys(o);
      const k = keys.length ? rng.pick(keys) : 'model_type';
      const before = rng.bool();
      const v = evilValue(rng, 20000);
      addDup(o, k, v.value, before);
      return { root, desc: `duplicate key ${k} = ${v.desc} (${before ? 'before, overridden' : 'after, wins'})` };
    }
    case 'rope': {
      const tc = isObj(root.text_config) ? root.text_config : root;
      const op = rng.int(4);
      if (op === 0) {
        const v = rng.bool() ? { type: 'linear', factor: 2 } : evilValue(rng).value;
        setKey(tc, 'rope_scaling', v);
        return { root, desc: `text_config.rope_scaling = ${v instanceof Raw ? v.text.slice(0, 30) : 'object'}` };
      }
      const k = ['rope_interleaved', 'qk_layer_norms', 'head_dim'][op - 1];
      const v = k === 'head_dim' ? rng.pick([15, 17, 1, 2, 0.5]) : rng.pick([true, 'true', 1]);
      setKey(tc, k, v);
      return { root, desc: `text_config.${k} = ${JSON.stringify(v)}` };
    }
    case 'ids': {
      const tc = isObj(root.text_config) ? root.text_config : root;
      const k = rng.pick(['bos_token_id', 'eos_token_id']);
      const v = rng.pick<[unknown, string]>([
        [[1, 2, 3], '[1,2,3]'],
        [[], '[]'],
        [[1, -1], '[1,-1]'],
        [[1, '2'], '[1,"2"]'],
        [[[1]], '[[1]]'],
        [Array(50000).fill(7), '50000 x 7'],
        [new Raw('[' + '['.repeat(50000) + ']'.repeat(50000) + ']'), 'deep x50000'],
      ]);
      setKey(tc, k, v[0]);
      return { root, desc: `text_config.${k} = ${v[1]}` };
    }
    case 'root': {
      const v = evilValue(rng);
      return { root: v.value, desc: `root = ${v.desc}` };
    }
    case 'long-string': {
      const s = rng.pick(strings.length ? strings : all);
      const v = longString(rng);
      setSlot(s, v.value);
      return { root, desc: `${s.path} = ${v.desc}` };
    }
    case 'feature-layer': {
      const v = rng.pick<unknown>([-1, -2, -3, -4, -5, 0, 3, 4, 100, -100, [-2], [-2, -1], '-2', 1.5, new Raw('-1e400'), new Raw('-9007199254740993')]);
      setKey(root, rng.bool(0.8) ? 'vision_feature_layer' : 'vision_feature_select_strategy', rng.bool(0.8) ? v : rng.pick(['full', 'default', 'cls', '']));
      return { root, desc: `vision_feature_* = ${v instanceof Raw ? v.text : JSON.stringify(v)}` };
    }
    default: {
      const s = rng.pick(all);
      const v = evilValue(rng);
      setSlot(s, v.value);
      return { root, desc: `${s.path} = ${v.desc}` };
    }
  }
}

/** Shared driver for JSON text targets: structural edits, then textual/byte edits. */
function mutateJsonText(
  rng: Rng,
  seedText: string,
  cap: number,
  structuralOp: (rng: Rng, root: unknown) => { root: unknown; desc: string },
  seedName: string,
): Mutated {
  const ops: string[] = [];
  const structural = rng.bool(0.75) ? rng.weighted<number>([[6, 1], [3, 2], [1, 3]]) : 0;
  let text = seedText;
  if (structural > 0) {
    let root: unknown = JSON.parse(seedText);
    for (let i = 0; i < structural; i++) {
      const r = structuralOp(rng, root);
      root = r.root;
      ops.push(r.desc);
    }
    text = ser(root, rng.bool() ? '  ' : '');
  }
  if (structural === 0 || rng.bool(0.15)) {
    const t = textMutation(rng, text);
    text = t.text;
    ops.push(t.desc);
  }
  let bytes: Uint8Array = enc.encode(text);
  const byteOps = structural === 0 ? rng.weighted<number>([[1, 0], [2, 1], [1, 2]]) : rng.bool(0.1) ? 1 : 0;
  for (let i = 0; i < byteOps; i++) {
    const r = byteMutation(rng, bytes, bytes.byteLength, false, cap);
    bytes = r.buf;
    ops.push(r.desc);
  }
  return { bytes, seed: seedName, ops };
}

function mutateConfig(rng: Rng, ctx: Ctx): Mutated {
  const seed = rng.pick(ctx.configSeeds);
  const m = mutateJsonText(rng, seed.text, ctx.cap, configMutation, seed.name);
  m.parser = rng.bool(0.9) ? seed.parser : seed.parser === 'llava' ? 'idefics3' : 'llava';
  if (m.parser !== seed.parser) m.ops.push(`parsed as ${m.parser}`);
  return m;
}

export function generateCase(ctx: Ctx, target: Target, seed: number, caseNo: number): Mutated {
  const rng = new Rng(caseSeed(seed, caseNo));
  if (target === 'safetensors') return mutateSafetensors(rng, ctx);
  if (target === 'index') return mutateIndex(rng, ctx);
  return mutateConfig(rng, ctx);
}

// ---------------------------------------------------------------------------------------------------
// Execution and classification.

type Outcome =
  | { kind: 'accepted' }
  | { kind: 'rejected'; group: string; wrapped: boolean }
  | { kind: 'json-rejected'; group: string }
  | { kind: 'failure'; what: string; error?: unknown };

/** Violated expectation of the fuzzer itself (not a loader error). */
class InvariantError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'InvariantError';
  }
}

function errorText(e: unknown): string {
  if (e instanceof Error) return `${e.name}: ${e.message}`;
  return `non-Error thrown: ${String(e)}`;
}

/**
 * A fresh copy of a short string that may be a slice of a huge one (V8 keeps the whole parent alive
 * behind a slice; keys and reports kept for the whole run must not pin multi-MB inputs or messages).
 */
function detach(s: string): string {
  return Buffer.from(s, 'utf8').toString('utf8');
}

/** First ~6 words of a typed error, without the file/tensor prefix and with numbers folded. */
export function groupKey(e: Error, file?: string): string {
  let m = e.message.slice(0, 4000);
  const f = e instanceof LoadError ? e.file : file;
  if (f && m.startsWith(f)) m = m.slice(f.length).replace(/^[^:]*:\s*/, '');
  if (e instanceof LoadError && e.tensor !== undefined) {
    const p = `tensor ${JSON.stringify(e.tensor)}: `;
    if (m.startsWith(p)) m = m.slice(p.length);
  }
  m = m
    .replace(/\/\S*vlm-fuzz-\S*/g, '<path>')
    .replace(/"(?:[^"\\]|\\.){25,}?"/g, '"..."')
    .replace(/(?<![A-Za-z0-9]-?)\d+/g, 'N')
    .replace(/(?:N,\s?){3,}N/g, 'N,...,N');
  const words = m.split(/\s+/).filter(Boolean).slice(0, 6).join(' ');
  return detach(words.length > 90 ? words.slice(0, 87) + '...' : words);
}

function typed(e: unknown, cls: typeof LoadError | typeof ConfigError, label: string, file?: string): Outcome {
  if (e instanceof InvariantError) return { kind: 'failure', what: e.message, error: e };
  if (e instanceof cls) return { kind: 'rejected', group: `${label}: ${groupKey(e, file)}`, wrapped: /unexpected error/.test(e.message) };
  return { kind: 'failure', what: `${label}: threw ${errorText(e)} (expected ${cls.name})`, error: e };
}

async function execSafetensors(ctx: Ctx, bytes: Uint8Array): Promise<Outcome> {
  fs.writeFileSync(ctx.stPath, bytes);
  let f: SafetensorsFile | undefined;
  try {
    f = await SafetensorsFile.open(ctx.stPath, { maxHeaderBytes: ctx.cap });
  } catch (e) {
    return typed(e, LoadError, 'safetensors');
  }
  try {
    const base = 8 + f.headerLength;
    const spans: [number, number][] = [];
    for (const [name, info] of f.tensors) {
      if (!isStDType(info.dtype)) throw new InvariantError(`accepted tensor ${JSON.stringify(name)} with dtype ${String(info.dtype)}`);
      let numel = 1;
      for (const d of info.shape) numel = d === 0 || numel === 0 ? 0 : numel * d;
      if (info.begin < base || info.end > f.fileSize || info.end - info.begin !== numel * ITEM_SIZE[info.dtype]) {
        throw new InvariantError(`accepted tensor ${JSON.stringify(name)} with span [${info.begin}, ${info.end}) / shape ${info.shape.length} dims`);
      }
      if (info.end > info.begin) spans.push([info.begin, info.end]);
      let bytesRead: Uint8Array;
      try {
        bytesRead = await f.read(name);
      } catch (e) {
        throw new InvariantError(`open() accepted the file but read(${JSON.stringify(name.slice(0, 40))}) threw ${errorText(e)}`);
      }
      if (bytesRead.byteLength !== info.end - info.begin) throw new InvariantError(`read(${JSON.stringify(name)}) returned ${bytesRead.byteLength} bytes`);
    }
    spans.sort((a, b) => a[0] - b[0]);
    for (let i = 1; i < spans.length; i++) {
      if (spans[i][0] < spans[i - 1][1]) throw new InvariantError(`accepted overlapping tensors at ${spans[i][0]}`);
    }
    return { kind: 'accepted' };
  } catch (e) {
    return { kind: 'failure', what: e instanceof InvariantError ? e.message : `after open: ${errorText(e)}`, error: e };
  } finally {
    await f.close();
  }
}

async function openCheckpoint(dir: string, cap: number, label: string, readAll: boolean): Promise<Outcome> {
  let ck: Checkpoint;
  try {
    ck = await Checkpoint.open(dir, { maxHeaderBytes: cap });
  } catch (e) {
    return typed(e, LoadError, label);
  }
  try {
    if (readAll) {
      for (const [name, info] of ck.tensors) {
        if (path.dirname(info.file) !== dir && !info.file.startsWith(dir + path.sep)) throw new InvariantError(`tensor ${name} maps to ${info.file} outside the model dir`);
        let b: Uint8Array;
        try {
          b = await ck.read(name);
        } catch (e) {
          throw new InvariantError(`Checkpoint.open accepted the index but read(${JSON.stringify(name.slice(0, 40))}) threw ${errorText(e)}`);
        }
        if (b.byteLength !== info.end - info.begin) throw new InvariantError(`read(${name}) returned ${b.byteLength} bytes`);
      }
    }
    return { kind: 'accepted' };
  } catch (e) {
    return { kind: 'failure', what: e instanceof InvariantError ? e.message : `after open: ${errorText(e)}`, error: e };
  } finally {
    await ck.close();
  }
}

async function execIndex(ctx: Ctx, bytes: Uint8Array): Promise<Outcome> {
  fs.writeFileSync(path.join(ctx.idxDir, INDEX_FILE), bytes);
  return openCheckpoint(ctx.idxDir, ctx.cap, 'index', true);
}

const CONFIG_NAME = 'config.json';

async function execConfig(ctx: Ctx, bytes: Uint8Array, parser: 'idefics3' | 'llava'): Promise<Outcome> {
  // Decode as Checkpoint.open does (fs.readFile(..., 'utf8')), so both see the same text.
  const text = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8');
  let json: unknown;
  let jsonError: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    jsonError = e;
  }
  let out: Outcome;
  if (jsonError !== undefined) {
    const name = jsonError instanceof Error ? jsonError.name : typeof jsonError;
    out = { kind: 'json-rejected', group: `JSON.parse: ${name}` };
  } else {
    try {
      const c = parser === 'llava' ? parseLlavaConfig(json, CONFIG_NAME) : parseIdefics3Config(json, CONFIG_NAME);
      if (c.model_type !== parser) throw new InvariantError(`parser ${parser} returned model_type ${String(c.model_type)}`);
      out = { kind: 'accepted' };
    } catch (e) {
      out = typed(e, ConfigError, `config(${parser})`, CONFIG_NAME);
    }
  }
  // The same text through Checkpoint.open: LoadError exactly when it is not a JSON object.
  fs.writeFileSync(path.join(ctx.cfgDir, CONFIG_NAME), bytes);
  const ck = await openCheckpoint(ctx.cfgDir, ctx.cap, 'config(Checkpoint)', false);
  const isObject = jsonError === undefined && typeof json === 'object' && json !== null && !Array.isArray(json);
  if (ck.kind === 'failure') return ck;
  if (ck.kind === 'accepted' && !isObject) return { kind: 'failure', what: 'Checkpoint.open accepted a config.json that is not a JSON object' };
  if (ck.kind === 'rejected' && isObject) return { kind: 'failure', what: `Checkpoint.open rejected a valid JSON object config: ${ck.group}` };
  return out;
}

async function execCase(ctx: Ctx, target: Target, m: Mutated): Promise<Outcome> {
  try {
    if (target === 'safetensors') return await execSafetensors(ctx, m.bytes);
    if (target === 'index') return await execIndex(ctx, m.bytes);
    return await execConfig(ctx, m.bytes, m.parser ?? 'idefics3');
  } catch (e) {
    return { kind: 'failure', what: `fuzz harness: ${errorText(e)}`, error: e };
  }
}

// ---------------------------------------------------------------------------------------------------
// Watchdog: a worker thread that kills the process if one case blocks the event loop too long.

const WATCHDOG_SRC = `
const { workerData } = require('node:worker_threads');
const fs = require('node:fs');
const { sab, limitMs, tmp } = workerData;
const state = new Int32Array(sab, 0, 4);
const start = new Float64Array(sab, 16, 1);
const text = new Uint8Array(sab, 24);
setInterval(() => {
  if (Atomics.load(state, 0) !== 1) return;
  const ms = Date.now() - start[0];
  if (ms <= limitMs) return;
  const desc = Buffer.from(text.subarray(0, Atomics.load(state, 1))).toString('utf8');
  fs.writeSync(2, '\\n[fuzz] WATCHDOG: case running for ' + ms + ' ms (limit ' + limitMs + ' ms), event loop blocked; killing the process.\\n[fuzz] ' + desc + '\\n');
  try { fs.rmSync(tmp, { recursive: true, force: true }); } catch {}
  process.kill(process.pid, 'SIGKILL');
}, 100);
`;

class Watchdog {
  private readonly sab = new SharedArrayBuffer(24 + 4096);
  private readonly state = new Int32Array(this.sab, 0, 4);
  private readonly start = new Float64Array(this.sab, 16, 1);
  private readonly text = new Uint8Array(this.sab, 24);
  private readonly worker: Worker;

  constructor(limitMs: number, tmp: string) {
    this.worker = new Worker(WATCHDOG_SRC, { eval: true, workerData: { sab: this.sab, limitMs, tmp }, execArgv: [] });
    this.worker.unref();
  }

  begin(desc: string): void {
    const { written } = enc.encodeInto(desc, this.text);
    Atomics.store(this.state, 1, written);
    this.start[0] = Date.now();
    Atomics.store(this.state, 0, 1);
  }

  end(): void {
    Atomics.store(this.state, 0, 0);
  }

  async stop(): Promise<void> {
    this.end();
    await this.worker.terminate();
  }
}

// ---------------------------------------------------------------------------------------------------
// The run loop.

export interface FuzzOptions {
  cases: number;
  seed?: number;
  targets?: readonly Target[] | 'all';
  /** Per-case time bound in ms (default 2000); a case over it is a hang. The watchdog fires at 10x. */
  timeBoundMs?: number;
  /** Header cap passed to the loaders (default 1 MiB). */
  maxHeaderBytes?: number;
  /** Heap growth bound in bytes (default 64 x maxHeaderBytes). */
  memBoundBytes?: number;
  /** Progress lines (on stderr by default) every `progressEvery` cases. */
  progress?: boolean | ((line: string) => void);
  progressEvery?: number;
  /** First case number (default 0). */
  firstCase?: number;
  /** Stop (with a summary of the cases run) after this many seconds. */
  maxSeconds?: number;
  /** Stop (with a summary of the cases run) once aborted; checked between cases. */
  signal?: AbortSignal;
}

export interface CaseFailure {
  kind: 'failure' | 'hang';
  target: Target;
  seed: number;
  caseNo: number;
  seedFile: string;
  mutation: string;
  what: string;
  stack?: string;
  ms: number;
  replay: string;
}

export interface TargetStats {
  cases: number;
  accepted: number;
  rejected: number;
  jsonRejected: number;
  failures: number;
  hangs: number;
  maxMs: number;
  totalMs: number;
}

export interface FuzzSummary {
  seed: number;
  /** Cases actually run (fewer than requested when stopped early). */
  cases: number;
  requestedCases: number;
  /** Why the run stopped before `requestedCases`, if it did. */
  stoppedEarly?: string;
  firstCase: number;
  targets: Target[];
  perTarget: Record<string, TargetStats>;
  accepted: number;
  rejected: number;
  jsonRejected: number;
  failureCount: number;
  hangCount: number;
  /** The first 100 failures and hangs. */
  failures: CaseFailure[];
  /** Typed-error groups (all targets), most frequent first. */
  groups: { key: string; count: number }[];
  /** Typed errors that wrap an unexpected exception ("unexpected error while ..."). */
  wrapped: { key: string; count: number }[];
  jsonGroups: { key: string; count: number }[];
  memory: {
    bound: number;
    baselineHeapUsed: number;
    peakHeapUsed: number;
    peakHeapGrowth: number;
    maxCaseGrowth: number;
    maxCaseGrowthAt: string;
    retainedGrowth: number;
    /** Largest heap right after a forced GC during the run, minus the baseline. */
    maxLiveGrowth: number;
    baselineRss: number;
    peakRss: number;
    gcAvailable: boolean;
    forcedGcs: number;
    ok: boolean;
  };
  fds: { start: number; end: number } | null;
  slowest: { target: Target; caseNo: number; ms: number; mutation: string } | null;
  timeBoundMs: number;
  elapsedMs: number;
  casesPerSec: number;
  ok: boolean;
}

function getGc(): (() => void) | undefined {
  const g = (globalThis as { gc?: unknown }).gc;
  if (typeof g === 'function') return g as () => void;
  try {
    v8.setFlagsFromString('--expose-gc');
    const f = vm.runInNewContext('gc') as unknown;
    return typeof f === 'function' ? (f as () => void) : undefined;
  } catch {
    return undefined;
  }
}

function openFds(): number | null {
  try {
    return fs.readdirSync('/proc/self/fd').length;
  } catch {
    return null;
  }
}

export function parseTargets(spec: string | readonly Target[] | undefined): Target[] {
  if (spec === undefined || spec === 'all') return [...ALL_TARGETS];
  const list = typeof spec === 'string' ? spec.split(',').map((s) => s.trim()).filter(Boolean) : [...spec];
  if (list.includes('all')) return [...ALL_TARGETS];
  const out: Target[] = [];
  for (const t of list) {
    if (!(ALL_TARGETS as readonly string[]).includes(t)) throw new Error(`unknown target ${JSON.stringify(t)}; expected all, ${ALL_TARGETS.join(', ')}`);
    if (!out.includes(t as Target)) out.push(t as Target);
  }
  return out.sort((a, b) => ALL_TARGETS.indexOf(a) - ALL_TARGETS.indexOf(b));
}

function describeCase(target: Target, seed: number, caseNo: number, m: Mutated): string {
  return `target=${target} seed=${seed} case=${caseNo} input=${m.seed} (${m.bytes.byteLength} bytes) ops: ${m.ops.join(' | ')}`;
}

function mib(n: number): string {
  return `${(n / 1048576).toFixed(1)} MiB`;
}

export async function runFuzz(opts: FuzzOptions): Promise<FuzzSummary> {
  const seed = (opts.seed ?? 1) >>> 0;
  const targets = parseTargets(opts.targets === 'all' ? undefined : opts.targets);
  const cap = opts.maxHeaderBytes ?? 1 << 20;
  const bound = opts.memBoundBytes ?? 64 * cap;
  const timeBound = opts.timeBoundMs ?? 2000;
  const first = opts.firstCase ?? 0;
  const every = opts.progressEvery ?? 2000;
  const log = opts.progress === true ? (s: string) => process.stderr.write(s + '\n') : typeof opts.progress === 'function' ? opts.progress : undefined;

  const ctx = await setup(cap);
  const gc = getGc();
  let forcedGcs = 0;
  const collect = () => {
    if (gc) {
      gc();
      forcedGcs++;
    }
  };
  const watchdog = new Watchdog(10 * timeBound + 1000, ctx.tmp);
  const perTarget: Record<string, TargetStats> = {};
  for (const t of targets) perTarget[t] = { cases: 0, accepted: 0, rejected: 0, jsonRejected: 0, failures: 0, hangs: 0, maxMs: 0, totalMs: 0 };
  const groups = new Map<string, number>();
  const wrapped = new Map<string, number>();
  const jsonGroups = new Map<string, number>();
  const failures: CaseFailure[] = [];
  let failureCount = 0;
  let hangCount = 0;
  let slowest: FuzzSummary['slowest'] = null;
  const bump = (m: Map<string, number>, k: string) => m.set(k, (m.get(k) ?? 0) + 1);

  const fdStart = openFds();
  collect();
  const base = process.memoryUsage();
  let peakHeap = base.heapUsed;
  let peakRss = base.rss;
  let maxCaseGrowth = 0;
  let maxCaseGrowthAt = '';
  const t0 = performance.now();
  let ran = 0;
  let stoppedEarly: string | undefined;
  // Heap after the last forced GC (live data plus whatever the loop's frame still references).
  let live = base.heapUsed;
  let maxLive = base.heapUsed;
  // The loop runs in its own frame, so nothing of the last case stays reachable when it returns.
  const loop = async (): Promise<void> => {
    for (let i = 0; i < opts.cases; i++) {
      if (opts.signal?.aborted) {
        stoppedEarly = 'interrupted';
        break;
      }
      if (opts.maxSeconds !== undefined && performance.now() - t0 > opts.maxSeconds * 1000) {
        stoppedEarly = `time budget of ${opts.maxSeconds} s reached`;
        break;
      }
      ran++;
      const caseNo = first + i;
      const target = targets[caseNo % targets.length];
      let m: Mutated;
      try {
        m = generateCase(ctx, target, seed, caseNo);
      } catch (e) {
        // A bug of the fuzzer itself: record it and go on.
        m = { bytes: new Uint8Array(0), seed: '(generation failed)', ops: [`generation threw ${errorText(e)}`] };
        failureCount++;
        perTarget[target].cases++;
        perTarget[target].failures++;
        if (failures.length < 100) {
          failures.push({
            kind: 'failure', target, seed, caseNo, seedFile: m.seed, mutation: '', what: `fuzz harness: ${m.ops[0]}`,
            stack: e instanceof Error ? e.stack?.split('\n').slice(0, 6).join('\n') : undefined, ms: 0,
            replay: `npm run fuzz -- --replay ${seed}:${caseNo} --target ${target}`,
          });
        }
        log?.(`[fuzz] FAILURE target=${target} case=${caseNo}: ${m.ops[0]}`);
        continue;
      }
      const desc = describeCase(target, seed, caseNo, m);
      // Memory before the loader runs (after generating the input); collect garbage when it piles up,
      // so that the peak reflects what single cases hold rather than uncollected garbage.
      let before = process.memoryUsage();
      if (gc && before.heapUsed - live > bound / 4) {
        collect();
        before = process.memoryUsage();
        live = before.heapUsed;
        if (live > maxLive) maxLive = live;
      }
      watchdog.begin(desc);
      const c0 = performance.now();
      let timer: NodeJS.Timeout | undefined;
      const hardLimit = new Promise<Outcome>((resolve) => {
        timer = setTimeout(() => resolve({ kind: 'failure', what: `did not settle within ${10 * timeBound} ms` }), 10 * timeBound);
      });
      let out = await Promise.race([execCase(ctx, target, m), hardLimit]);
      clearTimeout(timer);
      const ms = performance.now() - c0;
      watchdog.end();

      const st = perTarget[target];
      st.cases++;
      st.totalMs += ms;
      if (ms > st.maxMs) st.maxMs = ms;
      if (!slowest || ms > slowest.ms) slowest = { target, caseNo, ms, mutation: detach(m.ops.join(' | ').slice(0, 300)) };
      let hang = false;
      if (ms > timeBound) {
        hang = true;
        out = { kind: 'failure', what: `took ${ms.toFixed(0)} ms (bound ${timeBound} ms); outcome: ${out.kind === 'failure' ? out.what : out.kind}` };
      }
      if (out.kind === 'accepted') st.accepted++;
      else if (out.kind === 'rejected') {
        st.rejected++;
        bump(groups, out.group);
        if (out.wrapped) bump(wrapped, out.group);
      } else if (out.kind === 'json-rejected') {
        st.jsonRejected++;
        bump(jsonGroups, out.group);
      } else {
        if (hang) {
          st.hangs++;
          hangCount++;
        } else {
          st.failures++;
          failureCount++;
        }
        if (failures.length < 100) {
          const err = out.error;
          failures.push({
            kind: hang ? 'hang' : 'failure',
            target,
            seed,
            caseNo,
            seedFile: m.seed,
            mutation: detach(m.ops.join(' | ').slice(0, 600)),
            what: detach(out.what.slice(0, 600)),
            stack: err instanceof Error && err.stack ? detach(err.stack.slice(0, 4000).split('\n').slice(0, 6).join('\n')) : undefined,
            ms,
            replay: `npm run fuzz -- --replay ${seed}:${caseNo} --target ${target}`,
          });
        }
        log?.(`[fuzz] ${hang ? 'HANG' : 'FAILURE'} target=${target} case=${caseNo}: ${out.what.slice(0, 300)}\n[fuzz]   ops: ${m.ops.join(' | ').slice(0, 300)}`);
      }

      // Memory: growth during the loader call (heap + array buffers), peak heap and rss.
      const mem = process.memoryUsage();
      const growth = mem.heapUsed + mem.arrayBuffers - (before.heapUsed + before.arrayBuffers);
      if (growth > maxCaseGrowth) {
        maxCaseGrowth = growth;
        maxCaseGrowthAt = detach(`${target} case ${caseNo}: ${m.ops.join(' | ').slice(0, 200)}`);
      }
      if (mem.heapUsed > peakHeap) peakHeap = mem.heapUsed;
      if (mem.rss > peakRss) peakRss = mem.rss;

      if (log && (i + 1) % every === 0) {
        const el = (performance.now() - t0) / 1000;
        let acc = 0;
        let rej = 0;
        for (const s of Object.values(perTarget)) {
          acc += s.accepted;
          rej += s.rejected + s.jsonRejected;
        }
        log(
          `[fuzz] ${i + 1}/${opts.cases} cases, ${((i + 1) / el).toFixed(0)}/s, accepted ${acc}, rejected ${rej}, ` +
            `failures ${failureCount}, hangs ${hangCount}, heap ${mib(mem.heapUsed)}, rss ${mib(mem.rss)}, forced GCs ${forcedGcs}`,
        );
      }
    }
  };
  try {
    await loop();
  } finally {
    await watchdog.stop();
    removeTmp(ctx.tmp);
  }
  const elapsedMs = performance.now() - t0;
  collect();
  await new Promise((r) => setImmediate(r));
  collect();
  const end = process.memoryUsage();
  const fdEnd = openFds();
  const sorted = (m: Map<string, number>) => [...m].map(([key, count]) => ({ key, count })).sort((a, b) => b.count - a.count || (a.key < b.key ? -1 : 1));
  const totals = Object.values(perTarget).reduce(
    (a, s) => ({ accepted: a.accepted + s.accepted, rejected: a.rejected + s.rejected, json: a.json + s.jsonRejected }),
    { accepted: 0, rejected: 0, json: 0 },
  );
  const peakHeapGrowth = peakHeap - base.heapUsed;
  const retainedGrowth = end.heapUsed - base.heapUsed;
  const memOk = peakHeapGrowth < bound && maxCaseGrowth < bound && retainedGrowth < bound;
  const fdLeak = fdStart !== null && fdEnd !== null && fdEnd - fdStart > 16;
  return {
    seed,
    cases: ran,
    requestedCases: opts.cases,
    ...(stoppedEarly !== undefined ? { stoppedEarly } : {}),
    firstCase: first,
    targets,
    perTarget,
    accepted: totals.accepted,
    rejected: totals.rejected,
    jsonRejected: totals.json,
    failureCount: failureCount + (fdLeak ? 1 : 0),
    hangCount,
    failures: fdLeak
      ? [...failures, { kind: 'failure', target: targets[0], seed, caseNo: -1, seedFile: '', mutation: '', what: `file descriptors grew from ${fdStart} to ${fdEnd}`, ms: 0, replay: '' }]
      : failures,
    groups: sorted(groups),
    wrapped: sorted(wrapped),
    jsonGroups: sorted(jsonGroups),
    memory: {
      bound,
      baselineHeapUsed: base.heapUsed,
      peakHeapUsed: peakHeap,
      peakHeapGrowth,
      maxCaseGrowth,
      maxCaseGrowthAt,
      retainedGrowth,
      maxLiveGrowth: maxLive - base.heapUsed,
      baselineRss: base.rss,
      peakRss,
      gcAvailable: gc !== undefined,
      forcedGcs,
      ok: memOk,
    },
    fds: fdStart !== null && fdEnd !== null ? { start: fdStart, end: fdEnd } : null,
    slowest,
    timeBoundMs: timeBound,
    elapsedMs,
    casesPerSec: ran / (elapsedMs / 1000),
    ok: failureCount === 0 && hangCount === 0 && memOk && !fdLeak,
  } satisfies FuzzSummary;
}

export function formatSummary(s: FuzzSummary): string {
  const L: string[] = [];
  L.push(`fuzz summary: seed ${s.seed}, ${s.cases} cases (${s.firstCase}..${s.firstCase + s.cases - 1}), targets ${s.targets.join(', ')}`);
  if (s.stoppedEarly) L.push(`  stopped early after ${s.cases} of ${s.requestedCases} cases: ${s.stoppedEarly}`);
  L.push(`  elapsed ${(s.elapsedMs / 1000).toFixed(1)} s, ${s.casesPerSec.toFixed(1)} cases/s, time bound ${s.timeBoundMs} ms per case`);
  L.push('  per target:             cases   accepted   rejected  json-rej  failures  hangs   max ms   mean ms');
  for (const [t, st] of Object.entries(s.perTarget)) {
    L.push(
      `    ${t.padEnd(20)} ${String(st.cases).padStart(7)} ${String(st.accepted).padStart(10)} ${String(st.rejected).padStart(10)} ` +
        `${String(st.jsonRejected).padStart(9)} ${String(st.failures).padStart(9)} ${String(st.hangs).padStart(6)} ` +
        `${st.maxMs.toFixed(0).padStart(8)} ${(st.cases ? st.totalMs / st.cases : 0).toFixed(2).padStart(9)}`,
    );
  }
  L.push(`  accepted ${s.accepted}, rejected with a typed error ${s.rejected}, rejected by JSON.parse ${s.jsonRejected}, failures ${s.failureCount}, hangs ${s.hangCount}`);
  L.push(`  typed-error groups (top 15 of ${s.groups.length}):`);
  for (const g of s.groups.slice(0, 15)) L.push(`    ${String(g.count).padStart(7)}  ${g.key}`);
  if (s.jsonGroups.length) L.push(`  JSON.parse rejections: ${s.jsonGroups.map((g) => `${g.key} x${g.count}`).join(', ')}`);
  if (s.wrapped.length) {
    L.push(`  note: typed errors wrapping an unexpected exception (${s.wrapped.reduce((a, g) => a + g.count, 0)}):`);
    for (const g of s.wrapped.slice(0, 5)) L.push(`    ${String(g.count).padStart(7)}  ${g.key}`);
  }
  const m = s.memory;
  L.push(
    `  memory: heap baseline ${mib(m.baselineHeapUsed)}, peak ${mib(m.peakHeapUsed)} (growth ${mib(m.peakHeapGrowth)}), ` +
      `max growth in one case ${mib(m.maxCaseGrowth)}, ` +
      `live after forced GCs at most ${mib(m.maxLiveGrowth)} above baseline, retained at the end ${mib(m.retainedGrowth)}; bound ${mib(m.bound)} -> ${m.ok ? 'ok' : 'EXCEEDED'}`,
  );
  L.push(`          rss baseline ${mib(m.baselineRss)}, peak ${mib(m.peakRss)}; forced GCs ${m.forcedGcs}${m.gcAvailable ? '' : ' (gc unavailable)'}`);
  if (m.maxCaseGrowthAt) L.push(`          largest case growth at ${m.maxCaseGrowthAt}`);
  if (s.fds) L.push(`  open file descriptors: ${s.fds.start} -> ${s.fds.end}`);
  if (s.slowest) L.push(`  slowest case: ${s.slowest.target} #${s.slowest.caseNo} ${s.slowest.ms.toFixed(0)} ms: ${s.slowest.mutation.slice(0, 200)}`);
  if (s.failures.length) {
    L.push(`  FAILURES (${s.failureCount} failures, ${s.hangCount} hangs; first ${s.failures.length} shown):`);
    for (const f of s.failures) {
      L.push(`    [${f.kind}] ${f.target} seed ${f.seed} case ${f.caseNo} (${f.ms.toFixed(0)} ms) input ${f.seedFile}`);
      L.push(`      mutation: ${f.mutation}`);
      L.push(`      ${f.what}`);
      if (f.stack) L.push(f.stack.split('\n').map((l) => '        ' + l).join('\n'));
      if (f.replay) L.push(`      replay: ${f.replay}`);
    }
  }
  L.push(s.ok ? 'result: OK' : 'result: FAILED');
  return L.join('\n');
}

/** Rerun one case and describe it; optionally write the mutated input to `dump`. */
export async function replayCase(opts: {
  seed: number;
  caseNo: number;
  targets?: readonly Target[] | 'all';
  maxHeaderBytes?: number;
  dump?: string;
}): Promise<{ ok: boolean; report: string }> {
  const targets = parseTargets(opts.targets === 'all' ? undefined : opts.targets);
  const target = targets[opts.caseNo % targets.length];
  const ctx = await setup(opts.maxHeaderBytes ?? 1 << 20);
  try {
    const m = generateCase(ctx, target, opts.seed >>> 0, opts.caseNo);
    if (opts.dump) fs.writeFileSync(opts.dump, m.bytes);
    const t0 = performance.now();
    const out = await execCase(ctx, target, m);
    const ms = performance.now() - t0;
    const lines = [describeCase(target, opts.seed >>> 0, opts.caseNo, m), `took ${ms.toFixed(1)} ms`];
    if (out.kind === 'accepted') lines.push('outcome: accepted');
    else if (out.kind === 'rejected' || out.kind === 'json-rejected') lines.push(`outcome: ${out.kind}: ${out.group}`);
    else {
      lines.push(`outcome: FAILURE: ${out.what}`);
      if (out.error instanceof Error && out.error.stack) lines.push(out.error.stack);
    }
    if (opts.dump) lines.push(`input written to ${opts.dump}`);
    return { ok: out.kind !== 'failure', report: lines.join('\n') };
  } finally {
    removeTmp(ctx.tmp);
  }
}

// ---------------------------------------------------------------------------------------------------
// CLI.

const USAGE = `usage: npm run fuzz -- [--cases N] [--seed N] [--target all|safetensors|index|config[,...]]
                     [--first-case N] [--time-bound MS] [--max-seconds S] [--progress-every N] [--json]
       (Ctrl-C stops after the current case and prints the summary; a second Ctrl-C exits at once)
       npm run fuzz -- --replay SEED:CASE [--target T] [--dump FILE]`;

const stop = new AbortController();

async function main(argv: string[]): Promise<number> {
  const args = new Map<string, string>();
  const flags = new Set<string>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--help' || a === '-h') {
      process.stdout.write(USAGE + '\n');
      return 0;
    }
    if (!a.startsWith('--')) throw new Error(`unexpected argument ${JSON.stringify(a)}\n${USAGE}`);
    const eq = a.indexOf('=');
    if (eq > 0) args.set(a.slice(2, eq), a.slice(eq + 1));
    else if (a === '--json') flags.add('json');
    else {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${a} needs a value\n${USAGE}`);
      args.set(a.slice(2), v);
    }
  }
  const int = (k: string, d: number): number => {
    const v = args.get(k);
    if (v === undefined) return d;
    const n = Number(v);
    if (!Number.isSafeInteger(n) || n < 0) throw new Error(`--${k} must be a non-negative integer, got ${JSON.stringify(v)}`);
    return n;
  };
  for (const k of args.keys()) {
    if (!['cases', 'seed', 'target', 'replay', 'dump', 'first-case', 'time-bound', 'progress-every', 'max-seconds'].includes(k)) throw new Error(`unknown option --${k}\n${USAGE}`);
  }
  const targets = parseTargets(args.get('target'));
  const replay = args.get('replay');
  if (replay !== undefined) {
    const m = /^(\d+):(\d+)$/.exec(replay);
    if (!m) throw new Error(`--replay expects SEED:CASE, got ${JSON.stringify(replay)}`);
    const r = await replayCase({ seed: Number(m[1]), caseNo: Number(m[2]), targets, dump: args.get('dump') });
    process.stdout.write(r.report + '\n');
    return r.ok ? 0 : 1;
  }
  const seed = args.has('seed') ? int('seed', 0) : (Date.now() ^ (process.pid << 16)) >>> 0;
  const cases = int('cases', 10000);
  process.stderr.write(`[fuzz] seed ${seed >>> 0}, ${cases} cases, targets ${targets.join(', ')}\n`);
  const s = await runFuzz({
    cases,
    seed,
    targets,
    firstCase: int('first-case', 0),
    timeBoundMs: int('time-bound', 2000),
    progress: true,
    progressEvery: int('progress-every', 2000),
    ...(args.has('max-seconds') ? { maxSeconds: int('max-seconds', 0) } : {}),
    signal: stop.signal,
  });
  process.stdout.write((flags.has('json') ? JSON.stringify(s, null, 2) : formatSummary(s)) + '\n');
  return s.ok ? 0 : 1;
}

const isMain = process.argv[1] !== undefined && pathToFileURL(path.resolve(process.argv[1])).href === import.meta.url;
if (isMain) {
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.on(sig, () => {
      if (!stop.signal.aborted) {
        process.stderr.write(`[fuzz] ${sig}: stopping after the current case (again to exit at once)\n`);
        stop.abort();
        return;
      }
      for (const d of liveTmpDirs) fs.rmSync(d, { recursive: true, force: true });
      process.stderr.write(`[fuzz] ${sig}: exiting\n`);
      process.exit(130);
    });
  }
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (e: unknown) => {
      process.stderr.write(`${e instanceof Error ? e.message : String(e)}\n`);
      process.exitCode = 2;
    },
  );
}
