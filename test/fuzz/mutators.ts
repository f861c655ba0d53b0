// The fuzzer's mutators: hostile JSON values and trees (raw literals, duplicate keys), byte- and
// text-level mutations, and structure-aware mutations of each target's input (a safetensors header, a
// sharded index, a config.json); generateCase derives one case from (seed, case number).
import { ITEM_SIZE } from '../../src/io/dtype.ts';
import type { StDType } from '../../src/io/safetensors.ts';
import type { SeededRandom } from '../../src/random.ts';
import { caseRandom } from './rng.ts';
import { INDEX_FILE, SHARDS, type Ctx, type Target } from './targets.ts';

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

function numLiteral(rng: SeededRandom): Raw {
  if (rng.bool(0.25)) return new Raw(String(rng.pick([rng.u32(), rng.u32() * 2 ** 21 + rng.int(2 ** 21), -rng.u32(), rng.next() * 1e6])));
  return new Raw(rng.pick(NUM_LITERALS));
}

function deepNest(rng: SeededRandom, maxDepth = 300000): { value: Raw; desc: string } {
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

function longString(rng: SeededRandom): { value: Raw; desc: string } {
  const n = rng.pick([256, 4096, 65536, 500000, 2000000]);
  const kind = rng.int(5);
  const unit = ['a', '\\u0000', '€', '\\ud800', '\\"'][kind];
  return { value: new Raw('"' + unit.repeat(Math.ceil(n / unit.length)) + '"'), desc: `long string ${JSON.stringify(unit)} x${n}` };
}

function evilScalar(rng: SeededRandom): { value: unknown; desc: string } {
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

function evilValue(rng: SeededRandom, maxDepth = 300000): { value: unknown; desc: string } {
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
function byteMutation(rng: SeededRandom, buf: Uint8Array, hdrEnd: number, st: boolean, cap: number): { buf: Uint8Array; desc: string } {
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
function textMutation(rng: SeededRandom, text: string): { text: string; desc: string } {
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
// Structure-aware mutations.

export interface Mutated {
  bytes: Uint8Array;
  seed: string;
  ops: string[];
  parser?: 'idefics3' | 'llava';
  /** The quant target's config.json text. */
  config?: string;
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
function headerMutation(rng: SeededRandom, root: unknown, dataLength: number): { root: unknown; desc: string } {
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

function mutateSafetensors(rng: SeededRandom, ctx: Ctx, seeds = ctx.stSeeds): Mutated {
  const seed = rng.pick(seeds);
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

function indexMutation(rng: SeededRandom, root: unknown, tensors: string[]): { root: unknown; desc: string } {
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

function mutateIndex(rng: SeededRandom, ctx: Ctx): Mutated {
  return mutateJsonText(rng, ctx.indexText, ctx.cap, (r, root) => indexMutation(r, root, ctx.indexTensors), 'generated 2-shard index');
}

const NUMERIC_CONFIG_KEYS = [
  'hidden_size', 'intermediate_size', 'num_hidden_layers', 'num_attention_heads', 'num_key_value_heads', 'head_dim', 'patch_size',
  'image_size', 'num_channels', 'vocab_size', 'max_position_embeddings', 'rms_norm_eps', 'layer_norm_eps', 'rope_theta',
  'scale_factor', 'image_token_id', 'image_token_index', 'vision_feature_layer', 'bos_token_id', 'eos_token_id',
  'bits', 'group_size',
];

function configMutation(rng: SeededRandom, root: unknown): { root: unknown; desc: string } {
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
  rng: SeededRandom,
  seedText: string,
  cap: number,
  structuralOp: (rng: SeededRandom, root: unknown) => { root: unknown; desc: string },
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

function mutateConfig(rng: SeededRandom, ctx: Ctx): Mutated {
  const seed = rng.pick(ctx.configSeeds);
  const m = mutateJsonText(rng, seed.text, ctx.cap, configMutation, seed.name);
  m.parser = rng.bool(0.9) ? seed.parser : seed.parser === 'llava' ? 'idefics3' : 'llava';
  if (m.parser !== seed.parser) m.ops.push(`parsed as ${m.parser}`);
  return m;
}

/** A quantized checkpoint: its header mutated (packed tensors' shapes and dtypes among the edits), its config's quantization_config, or both. */
function mutateQuant(rng: SeededRandom, ctx: Ctx): Mutated {
  const seed = rng.pick(ctx.quantSeeds);
  const what = rng.weighted<string>([[5, 'header'], [3, 'config'], [1, 'both']]);
  const m: Mutated = what === 'config' ? { bytes: seed.st.bytes, seed: seed.st.name, ops: [] } : mutateSafetensors(rng, ctx, [seed.st]);
  m.config = seed.config;
  if (what !== 'header') {
    const c = mutateJsonText(rng, seed.config, ctx.cap, configMutation, `${seed.st.name} config.json`);
    m.config = new TextDecoder().decode(c.bytes);
    m.ops.push(...c.ops.map((o) => `config: ${o}`));
  }
  return m;
}

export function generateCase(ctx: Ctx, target: Target, seed: number, caseNo: number): Mutated {
  const rng = caseRandom(seed, caseNo);
  if (target === 'safetensors') return mutateSafetensors(rng, ctx);
  if (target === 'index') return mutateIndex(rng, ctx);
  if (target === 'quant') return mutateQuant(rng, ctx);
  return mutateConfig(rng, ctx);
}
