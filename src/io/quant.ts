// Quantized weights on the host: the published AWQ (GEMM) and GPTQ (v1 and v2) packings and our own
// round-to-nearest q8/q4, all converted to one layout that the GPU kernels read (QuantRows below).
// References: AutoAWQ's GEMM packing and AutoGPTQ's QuantLinear as the fixtures' READMEs specify them
// (test/fixtures/llava-{awq,gptq}-tiny), and the quantization_config keys of transformers' AwqConfig and GPTQConfig.
import * as nodePath from 'node:path';
import { ConfigError } from '../models/config.ts';
import type { Checkpoint } from './checkpoint.ts';
import { ITEM_SIZE, numelOf, type StDType } from './dtype.ts';
import { jsonText } from './json.ts';
import { LoadError } from './safetensors.ts';

// ---------------------------------------------------------------------------------------------------
// The internal layout

/** zeros false: the zero point is implicitly 2^(bits-1) (8 or 128) for every group. */
export interface QuantSpec {
  bits: 4 | 8;
  group: number;
  zeros: boolean;
}

/**
 * A weight W [rows, K] in groups of `spec.group` along K. W[n, k] = (q[n, k] − z[n, g]) · s[n, g] with
 * g = floor(k / group), computed in f32 (exact: |q − z| ≤ 255 and s has an 11-bit mantissa).
 */
export interface QuantRows {
  spec: QuantSpec;
  /** N, the out features. */
  rows: number;
  /** The in features; K % group === 0 and group % 8 === 0, so a row is always whole u32 words. */
  K: number;
  /** rows·K·bits/32 words; element e = n·K + k sits in word floor(e·bits/32) at bit (e·bits) % 32, lowest k in the low bits. Unsigned codes. */
  values: Uint32Array;
  /** rows·(K/group) f16 bit patterns, index n·(K/group) + g. */
  scales: Uint16Array;
  /** rows·(K/group) unsigned zero codes, index n·(K/group) + g; present exactly when spec.zeros. */
  zeros?: Uint8Array;
}

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** Words of one row of values. */
function rowWords(K: number, bits: number): number {
  return (K * bits) / 32;
}

// ---------------------------------------------------------------------------------------------------
// f16 bit patterns. Math.f16round is not in Node 20, and the scales only need these two exact conversions.

/** 2^(e−25) for each f16 exponent field e (2^-24 for subnormals, e = 0): the weight of one mantissa step. */
const F16_STEP = Float64Array.from({ length: 32 }, (_, e) => 2 ** (e === 0 ? -24 : e - 25));

/** The value of an f16 bit pattern, exactly (every f16 is an f32). */
export function f16Value(h: number): number {
  const e = (h >>> 10) & 31;
  const m = h & 1023;
  const v = e === 31 ? (m === 0 ? Infinity : NaN) : (e === 0 ? m : 1024 + m) * F16_STEP[e];
  return h & 0x8000 ? -v : v;
}

/** Round half to even, exact for |v| < 2^51: adding 1.5·2^52 leaves no fraction bits, and IEEE addition rounds ties to even. */
const ROUND_MAGIC = 6755399441055744;

// The exponent of an f64, read from its bits: exact, and cheaper than Math.log2 once per quantization group.
const f64 = new Float64Array(1);
const f64Hi = new Uint32Array(f64.buffer, LITTLE_ENDIAN ? 4 : 0, 1);
/** 2^(10−e) for the f16 normal exponents e = −14..15, at index e + 14. */
const F16_SCALE_UP = Float64Array.from({ length: 30 }, (_, i) => 2 ** (10 - (i - 14)));

/**
 * The f16 bit pattern nearest to x ≥ 0 (ties to even), rounding once from the f64 value. Above the largest
 * finite f16 (65504) it saturates there instead of giving infinity: a scale must stay finite.
 */
export function f16BitsOf(x: number): number {
  if (!(x >= 0)) throw new RangeError(`f16BitsOf: expected a non-negative number, got ${x}`);
  if (x >= 65504) return 0x7bff;
  // Subnormals are the multiples of 2^-24; 1024 · 2^-24 = 2^-14 comes out as 0x0400, the smallest normal.
  if (x < 2 ** -14) return (x * 2 ** 24 + ROUND_MAGIC) - ROUND_MAGIC;
  f64[0] = x;
  const e = ((f64Hi[0] >>> 20) & 0x7ff) - 1023;
  // x · 2^(10−e) lies in [1024, 2048); a round up to 2048 carries into the exponent, as it should.
  return ((e + 15) << 10) + ((x * F16_SCALE_UP[e + 14] + ROUND_MAGIC) - ROUND_MAGIC) - 1024;
}

// ---------------------------------------------------------------------------------------------------
// quantization_config

export interface AwqMethod {
  method: 'awq';
  bits: 4;
  /** Group size along K; −1 means one group over the whole K of each tensor. */
  group: number;
  zeroPoint: boolean;
  /** Module name fragments left in float (transformers matches them as substrings). */
  notConverted: string[];
  /** The file the settings came from, for errors. */
  where: string;
}

export interface GptqMethod {
  method: 'gptq';
  bits: 4 | 8;
  /** Group size along K; −1 means one group over the whole K of each tensor. */
  group: number;
  descAct: boolean;
  sym: boolean;
  /** 'gptq' (v1) stores each zero as z − 1; 'gptq_v2' stores z. */
  format: 'gptq' | 'gptq_v2';
  notConverted: string[];
  where: string;
}

export type QuantMethod = AwqMethod | GptqMethod;

const SUPPORTED_METHODS = ['awq', 'gptq'];

function configInt(q: Record<string, unknown>, key: string, where: string, dflt?: number): number {
  const v = q[key] ?? dflt;
  if (typeof v !== 'number' || !Number.isInteger(v)) {
    throw new ConfigError(`${where}: "${key}" must be an integer, got ${jsonText(q[key])}`);
  }
  return v;
}

function configBool(q: Record<string, unknown>, key: string, where: string, dflt: boolean): boolean {
  const v = q[key] ?? dflt;
  if (typeof v !== 'boolean') throw new ConfigError(`${where}: "${key}" must be true or false, got ${jsonText(q[key])}`);
  return v;
}

function configStr(q: Record<string, unknown>, key: string, where: string, dflt?: string): string {
  const v = q[key] ?? dflt;
  if (typeof v !== 'string') throw new ConfigError(`${where}: "${key}" must be a string, got ${jsonText(q[key])}`);
  return v;
}

function configGroup(q: Record<string, unknown>, where: string): number {
  const g = configInt(q, 'group_size', where, 128);
  if (g === -1) return g;
  if (g <= 0 || g % 8 !== 0) {
    throw new ConfigError(
      `${where}: "group_size" must be a positive multiple of 8 (or -1 for one group over the whole row), got ${jsonText(q.group_size)}`,
    );
  }
  return g;
}

function configModules(q: Record<string, unknown>, where: string): string[] {
  const v = q.modules_to_not_convert;
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v) || v.some((m) => typeof m !== 'string')) {
    throw new ConfigError(`${where}: "modules_to_not_convert" must be a list of module names, got ${jsonText(v)}`);
  }
  return v as string[];
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * The quantization of a checkpoint as transformers reads it: config.json's `quantization_config`, else a
 * separate AutoGPTQ `quantize_config.json` (whose older versions name no quant_method: it is then GPTQ).
 * `where` names the model folder in errors. Undefined when the checkpoint is not quantized.
 */
export function quantConfigOf(
  config: Record<string, unknown>,
  quantizeConfig: Record<string, unknown> | undefined,
  where: string,
): QuantMethod | undefined {
  let q: Record<string, unknown>;
  let at: string;
  let dfltMethod: string | undefined;
  const inConfig = config.quantization_config;
  if (inConfig !== undefined && inConfig !== null) {
    at = `${nodePath.join(where, 'config.json')} quantization_config`;
    if (!isObject(inConfig)) throw new ConfigError(`${at}: must be an object, got ${jsonText(inConfig)}`);
    q = inConfig;
  } else if (quantizeConfig !== undefined) {
    at = nodePath.join(where, 'quantize_config.json');
    q = quantizeConfig;
    dfltMethod = 'gptq';
  } else {
    return undefined;
  }

  if (q.quant_method === undefined && dfltMethod === undefined) {
    throw new ConfigError(`${at}: "quant_method" is missing (supported: ${SUPPORTED_METHODS.join(', ')})`);
  }
  const method = configStr(q, 'quant_method', at, dfltMethod).toLowerCase();
  if (method === 'awq') return awqMethod(q, at);
  if (method === 'gptq') return gptqMethod(q, at);
  throw new ConfigError(`${at}: quant_method "${method}" is not supported (supported: ${SUPPORTED_METHODS.join(', ')})`);
}

function awqMethod(q: Record<string, unknown>, where: string): AwqMethod {
  // AwqConfig's defaults: version gemm, zero_point true, group_size 128, bits 4.
  const version = configStr(q, 'version', where, 'gemm');
  if (version.toLowerCase() !== 'gemm') {
    throw new ConfigError(
      `${where}: AWQ version "${version}" is not supported: only "gemm" checkpoints are (GEMV, GEMV_fast, Marlin and exllama pack their words differently)`,
    );
  }
  // transformers' llm-awq backend packs qweight [N, K/8] rather than AutoAWQ's [K, N/8].
  const backend = configStr(q, 'backend', where, 'autoawq');
  if (backend.toLowerCase() !== 'autoawq') {
    throw new ConfigError(`${where}: AWQ backend "${backend}" is not supported: only "autoawq" (AutoAWQ GEMM packing) is`);
  }
  const bits = configInt(q, 'bits', where, 4);
  if (bits !== 4) throw new ConfigError(`${where}: "bits" ${jsonText(q.bits)} is not supported: AWQ GEMM packs 4-bit weights only (expected 4)`);
  return {
    method: 'awq',
    bits: 4,
    group: configGroup(q, where),
    zeroPoint: configBool(q, 'zero_point', where, true),
    notConverted: configModules(q, where),
    where,
  };
}

function gptqMethod(q: Record<string, unknown>, where: string): GptqMethod {
  if (q.bits === undefined) throw new ConfigError(`${where}: "bits" is missing (expected 4 or 8)`);
  const bits = configInt(q, 'bits', where);
  if (bits !== 4 && bits !== 8) throw new ConfigError(`${where}: "bits" ${bits} is not supported: GPTQ weights must be 4 or 8 bits`);
  if (q.is_marlin_format === true) throw new ConfigError(`${where}: "is_marlin_format" true is not supported: Marlin repacks the GPTQ words`);
  const format = configStr(q, 'checkpoint_format', where, 'gptq').toLowerCase();
  if (format !== 'gptq' && format !== 'gptq_v2') {
    throw new ConfigError(`${where}: "checkpoint_format" "${format}" is not supported (expected "gptq" or "gptq_v2")`);
  }
  const packDtype = configStr(q, 'pack_dtype', where, 'int32');
  if (packDtype !== 'int32') throw new ConfigError(`${where}: "pack_dtype" "${packDtype}" is not supported (expected "int32")`);
  return {
    method: 'gptq',
    bits,
    group: configGroup(q, where),
    descAct: configBool(q, 'desc_act', where, false),
    sym: configBool(q, 'sym', where, true),
    format,
    notConverted: configModules(q, where),
    where,
  };
}

/** Whether the module stays in float: transformers skips a module whose name contains any listed fragment. */
export function isNotConverted(method: QuantMethod, moduleName: string): boolean {
  return method.notConverted.some((m) => moduleName.includes(m));
}

// ---------------------------------------------------------------------------------------------------
// Packed tensors as stored

/** One stored tensor of a packed linear: where it lives, how it is declared, and its raw little-endian bytes. */
export interface PackedTensor {
  name: string;
  file: string;
  dtype: StDType;
  shape: readonly number[];
  bytes: Uint8Array;
}

/**
 * The tensors of one quantized linear. Each carries its own file, since a sharded checkpoint may split
 * them. `rows` and `K`, when the caller knows them from the model config, are checked against the
 * tensors; otherwise they are read from the scales (rows) and the qweight (K).
 */
export interface PackedLinear {
  /** The module name, e.g. `model.language_model.layers.0.self_attn.q_proj`. */
  name: string;
  qweight: PackedTensor;
  qzeros?: PackedTensor;
  scales: PackedTensor;
  g_idx?: PackedTensor;
  rows?: number;
  K?: number;
}

/** Module names of the packed linears among tensor names (those with a `.qweight`), sorted. */
export function packedLinearNames(names: Iterable<string>): string[] {
  const out: string[] = [];
  for (const n of names) if (n.endsWith('.qweight')) out.push(n.slice(0, -'.qweight'.length));
  return out.sort();
}

/** Reads the tensors of the packed linear `module` (qweight and scales required; qzeros and g_idx when stored). */
export async function readPackedLinear(ckpt: Checkpoint, module: string): Promise<PackedLinear> {
  const part = async (suffix: string, required: boolean): Promise<PackedTensor | undefined> => {
    const name = `${module}.${suffix}`;
    const info = ckpt.get(name);
    if (!info) {
      if (!required) return undefined;
      throw new LoadError(ckpt.dir, `missing: a packed linear needs ${module}.qweight and ${module}.scales`, { tensor: name });
    }
    return { name, file: info.file, dtype: info.dtype, shape: info.shape, bytes: await ckpt.read(name) };
  };
  return {
    name: module,
    qweight: (await part('qweight', true))!,
    qzeros: await part('qzeros', false),
    scales: (await part('scales', true))!,
    g_idx: await part('g_idx', false),
  };
}


/** Checks dtype and shape against the expected ones; `why` says where the expected shape comes from. */
function expectTensor(t: PackedTensor, dtype: StDType, shape: readonly number[], why: string): void {
  const same = t.dtype === dtype && t.shape.length === shape.length && t.shape.every((d, i) => d === shape[i]);
  if (!same) {
    throw new LoadError(t.file, `expected ${dtype} ${jsonText(shape)} (${why}), got ${t.dtype} ${jsonText(t.shape)}`, {
      tensor: t.name,
    });
  }
  const want = Number(numelOf(t.shape)) * ITEM_SIZE[t.dtype];
  if (t.bytes.byteLength !== want) {
    throw new LoadError(t.file, `byte length: ${t.dtype} ${jsonText(t.shape)} needs ${want} bytes, got ${t.bytes.byteLength}`, {
      tensor: t.name,
    });
  }
}

/** A 2-D tensor's dims, or an error naming its shape. */
function dims2(t: PackedTensor, what: string): [number, number] {
  if (t.shape.length !== 2) {
    throw new LoadError(t.file, `expected a 2-D tensor (${what}), got ${t.dtype} ${jsonText(t.shape)}`, { tensor: t.name });
  }
  return [t.shape[0], t.shape[1]];
}

function u32Of(t: PackedTensor): Uint32Array {
  const n = t.bytes.byteLength / 4;
  if (!LITTLE_ENDIAN) {
    const dv = new DataView(t.bytes.buffer, t.bytes.byteOffset, t.bytes.byteLength);
    const out = new Uint32Array(n);
    for (let i = 0; i < n; i++) out[i] = dv.getUint32(i * 4, true);
    return out;
  }
  const b = t.bytes.byteOffset % 4 === 0 ? t.bytes : t.bytes.slice();
  return new Uint32Array(b.buffer, b.byteOffset, n);
}

function u16Of(t: PackedTensor): Uint16Array {
  const n = t.bytes.byteLength / 2;
  if (!LITTLE_ENDIAN) {
    const dv = new DataView(t.bytes.buffer, t.bytes.byteOffset, t.bytes.byteLength);
    const out = new Uint16Array(n);
    for (let i = 0; i < n; i++) out[i] = dv.getUint16(i * 2, true);
    return out;
  }
  const b = t.bytes.byteOffset % 2 === 0 ? t.bytes : t.bytes.slice();
  return new Uint16Array(b.buffer, b.byteOffset, n);
}

/**
 * rows and K: the caller's (from the model config) when given, else read from the qweight, which every
 * other tensor is then checked against. The group is resolved (−1 → K) and must divide K.
 */
function geometry(
  t: PackedLinear,
  group: number,
  fromQweight: { rows: number; K: number },
  qweightShape: (rows: number, K: number) => number[],
  qweightLayout: string,
  /** Out features per packed word: rows must be a multiple of it. */
  rowMultiple: number,
): { rows: number; K: number; G: number; groups: number } {
  const rows = t.rows ?? fromQweight.rows;
  const K = t.K ?? fromQweight.K;
  const source = t.rows !== undefined || t.K !== undefined ? 'from the model config' : 'from the qweight';
  const G = group === -1 ? K : group;
  const qwText = `qweight ${t.qweight.dtype} ${jsonText(t.qweight.shape)}`;
  if (!(K > 0) || K % G !== 0) {
    throw new LoadError(
      t.qweight.file,
      `group size ${G} does not divide K = ${K} in features (${source}); expected K a positive multiple of ${G} (${qwText})`,
      { tensor: t.qweight.name },
    );
  }
  if (K % 8 !== 0) {
    throw new LoadError(t.qweight.file, `K = ${K} in features (${source}) is not a multiple of 8, as the row layout needs (${qwText})`, {
      tensor: t.qweight.name,
    });
  }
  if (!(rows > 0) || rows % rowMultiple !== 0) {
    throw new LoadError(t.qweight.file, `out features N = ${rows} (${source}) is not a positive multiple of ${rowMultiple}, as the packed words need`, {
      tensor: t.qweight.name,
    });
  }
  expectTensor(t.qweight, 'I32', qweightShape(rows, K), `${qweightLayout} with N = ${rows} out and K = ${K} in features ${source}`);
  return { rows, K, G, groups: K / G };
}

/** Scales [groups, rows] as stored → [rows, groups]. */
function transposeScales(s: Uint16Array, rows: number, groups: number): Uint16Array {
  const out = new Uint16Array(rows * groups);
  for (let g = 0; g < groups; g++) {
    const src = g * rows;
    for (let n = 0; n < rows; n++) out[n * groups + g] = s[src + n];
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------
// AWQ GEMM

/**
 * AutoAWQ packs 8 output columns per word in the order [0, 2, 4, 6, 1, 3, 5, 7]; so column j of a word
 * sits in nibble AWQ_NIBBLE[j] (AutoAWQ's AWQ_REVERSE_ORDER).
 */
const AWQ_NIBBLE = [0, 4, 1, 5, 2, 6, 3, 7];

/**
 * An AWQ GEMM linear: qweight I32 [K, N/8] packed along N (interleaved), qzeros I32 [K/G, N/8] packed the
 * same way and stored as is, scales F16 [K/G, N].
 */
export function awqToRows(t: PackedLinear, method: AwqMethod): QuantRows {
  const [qwK, qwC] = dims2(t.qweight, 'qweight [K, N/8]');
  const { rows, K, G, groups } = geometry(t, method.group, { rows: qwC * 8, K: qwK }, (n, k) => [k, n / 8], '[K, N/8]', 8);
  const C = rows / 8;
  expectTensor(t.scales, 'F16', [groups, rows], `[K/G, N] = [${K}/${G}, ${rows}]`);
  if (t.qzeros) expectTensor(t.qzeros, 'I32', [groups, C], `[K/G, N/8] = [${K}/${G}, ${rows}/8]`);
  else if (method.zeroPoint) {
    throw new LoadError(t.qweight.file, `${t.name}.qzeros is missing, but ${method.where} says zero_point true (expected I32 ${jsonText([groups, C])})`, {
      tensor: `${t.name}.qzeros`,
    });
  }

  // 8 rows k0..k0+7 of one word column c give 8 output rows n = 8c+j, each one whole word of 8 k's.
  const qw = u32Of(t.qweight);
  const kw = K / 8;
  const values = new Uint32Array(rows * kw);
  for (let k0 = 0; k0 < K; k0 += 8) {
    for (let c = 0; c < C; c++) {
      for (let j = 0; j < 8; j++) {
        const shift = AWQ_NIBBLE[j] * 4;
        let word = 0;
        for (let i = 0; i < 8; i++) word |= ((qw[(k0 + i) * C + c] >>> shift) & 15) << (4 * i);
        values[(8 * c + j) * kw + (k0 >>> 3)] = word;
      }
    }
  }

  let zeros: Uint8Array | undefined;
  if (t.qzeros) {
    const qz = u32Of(t.qzeros);
    zeros = new Uint8Array(rows * groups);
    for (let g = 0; g < groups; g++) {
      for (let n = 0; n < rows; n++) zeros[n * groups + g] = (qz[g * C + (n >>> 3)] >>> (AWQ_NIBBLE[n & 7] * 4)) & 15;
    }
  }
  const spec: QuantSpec = { bits: 4, group: G, zeros: zeros !== undefined };
  const out: QuantRows = { spec, rows, K, values, scales: transposeScales(u16Of(t.scales), rows, groups) };
  if (zeros) out.zeros = zeros;
  return out;
}

// ---------------------------------------------------------------------------------------------------
// GPTQ

/**
 * A GPTQ linear: qweight I32 [K·bits/32, N] packed along K (lowest k in the low bits, as our layout, so a
 * word transpose), qzeros I32 [K/G, N·bits/32] packed along N (v1 stores z − 1), scales F16 [K/G, N],
 * g_idx I32 [K] which must be floor(k/G): act-order checkpoints are refused. When every zero is
 * 2^(bits−1), as in every symmetric checkpoint, the zeros are dropped (spec.zeros false).
 */
export function gptqToRows(t: PackedLinear, method: GptqMethod): QuantRows {
  const bits = method.bits;
  const per = 32 / bits;
  const [qwRows, qwN] = dims2(t.qweight, `qweight [K·${bits}/32, N]`);
  const { rows, K, G, groups } = geometry(t, method.group, { rows: qwN, K: qwRows * per }, (n, k) => [k / per, n], `[K·${bits}/32, N]`, per);
  expectTensor(t.scales, 'F16', [groups, rows], `[K/G, N] = [${K}/${G}, ${rows}]`);
  if (!t.qzeros) {
    throw new LoadError(t.qweight.file, `${t.name}.qzeros is missing; every GPTQ linear stores its zero points (expected I32 ${jsonText([groups, rows / per])})`, {
      tensor: `${t.name}.qzeros`,
    });
  }
  expectTensor(t.qzeros, 'I32', [groups, rows / per], `[K/G, N·${bits}/32] = [${K}/${G}, ${rows}·${bits}/32]`);
  checkGroupIndex(t, method, K, G);

  const qw = u32Of(t.qweight);
  const kw = rowWords(K, bits);
  const values = new Uint32Array(rows * kw);
  for (let r = 0; r < kw; r++) {
    const src = r * rows;
    for (let n = 0; n < rows; n++) values[n * kw + r] = qw[src + n];
  }

  const qz = u32Of(t.qzeros);
  const mask = (1 << bits) - 1;
  const plus = method.format === 'gptq' ? 1 : 0;
  const mid = 1 << (bits - 1);
  const zeros = new Uint8Array(rows * groups);
  let allMid = true;
  for (let g = 0; g < groups; g++) {
    const src = g * (rows / per);
    for (let n = 0; n < rows; n++) {
      const z = ((qz[src + Math.floor(n / per)] >>> (bits * (n % per))) + plus) & mask;
      zeros[n * groups + g] = z;
      if (z !== mid) allMid = false;
    }
  }
  const spec: QuantSpec = { bits, group: G, zeros: !allMid };
  const out: QuantRows = { spec, rows, K, values, scales: transposeScales(u16Of(t.scales), rows, groups) };
  if (!allMid) out.zeros = zeros;
  return out;
}

function checkGroupIndex(t: PackedLinear, method: GptqMethod, K: number, G: number): void {
  const gi = t.g_idx;
  if (!gi) {
    if (method.descAct) {
      throw new LoadError(t.qweight.file, `${t.name}.g_idx is missing, but ${method.where} says desc_act true (act-order), which needs it; act-order checkpoints are not supported anyway`, {
        tensor: `${t.name}.g_idx`,
      });
    }
    return;
  }
  expectTensor(gi, 'I32', [K], 'one group index per in feature');
  const u = u32Of(gi);
  const idx = new Int32Array(u.buffer, u.byteOffset, K);
  for (let k = 0; k < K; k++) {
    if (idx[k] !== Math.floor(k / G)) {
      throw new LoadError(
        gi.file,
        `act-order (desc_act) checkpoints are not supported: g_idx[${k}] is ${idx[k]}, expected floor(${k}/${G}) = ${Math.floor(k / G)}; ` +
          `such checkpoints say "desc_act": true in their quantization_config (this one: ${method.descAct})`,
        { tensor: gi.name },
      );
    }
  }
}

/** The conversion for the checkpoint's method. */
export function packedToRows(t: PackedLinear, method: QuantMethod): QuantRows {
  return method.method === 'awq' ? awqToRows(t, method) : gptqToRows(t, method);
}

// ---------------------------------------------------------------------------------------------------
// Our own quantization at load, and the CPU reference

/**
 * Symmetric round-to-nearest quantization of W [rows, K] (f32, row-major) in groups of `group` along K.
 * Per group: scale = amax / (2^(bits−1) − 1) rounded once to f16 (at least the smallest subnormal when
 * amax > 0, at most 65504); code = clamp(round_half_even(w / scale), −2^(bits−1), 2^(bits−1) − 1) + 2^(bits−1),
 * the quotient in f64. An all-zero group gets scale 0 and the zero point as every code. No zeros array.
 */
export function quantizeRows(w: Float32Array, rows: number, K: number, bits: 4 | 8, group = 32, where = 'quantizeRows'): QuantRows {
  if (bits !== 4 && bits !== 8) throw new RangeError(`${where}: bits must be 4 or 8, got ${bits}`);
  if (!Number.isInteger(group) || group <= 0 || group % 8 !== 0) {
    throw new RangeError(`${where}: group must be a positive multiple of 8, got ${group}`);
  }
  if (!Number.isInteger(K) || K <= 0 || K % group !== 0) throw new RangeError(`${where}: group ${group} does not divide K = ${K}`);
  if (!Number.isInteger(rows) || rows < 0 || w.length !== rows * K) {
    throw new RangeError(`${where}: expected ${rows}·${K} = ${rows * K} weights, got ${w.length}`);
  }
  const mid = 1 << (bits - 1);
  const qmax = mid - 1;
  const lo = -mid;
  const perWord = 32 / bits;
  const groups = K / group;
  const wordsPerGroup = group / perWord;
  const values = new Uint32Array(rows * rowWords(K, bits));
  const scales = new Uint16Array(rows * groups);
  const midWord = bits === 4 ? 0x88888888 : 0x80808080;

  let wi = 0;
  for (let n = 0; n < rows; n++) {
    for (let g = 0; g < groups; g++) {
      const base = n * K + g * group;
      let amax = 0;
      let sum = 0; // finite exactly when every weight is: f32 values cannot overflow an f64 sum
      for (let j = 0; j < group; j++) {
        const a = Math.abs(w[base + j]);
        sum += a;
        if (a > amax) amax = a;
      }
      if (!Number.isFinite(sum)) {
        let j = 0;
        while (Number.isFinite(w[base + j])) j++;
        throw new RangeError(`${where}: weight [${n}, ${g * group + j}] is ${w[base + j]}; only finite weights can be quantized`);
      }
      if (amax === 0) {
        scales[n * groups + g] = 0;
        values.fill(midWord, wi, wi + wordsPerGroup);
        wi += wordsPerGroup;
        continue;
      }
      const sb = Math.max(f16BitsOf(amax / qmax), 1);
      scales[n * groups + g] = sb;
      const s = f16Value(sb);
      let j = base;
      for (let q = 0; q < wordsPerGroup; q++) {
        let word = 0;
        for (let i = 0; i < perWord; i++) {
          let v = w[j++] / s;
          // Clamp before rounding (same result, integer bounds) so the magic-number rounding stays in range.
          v = v < lo ? lo : v > qmax ? qmax : v;
          const code = (v + ROUND_MAGIC) - ROUND_MAGIC + mid;
          word |= code << (i * bits);
        }
        values[wi++] = word;
      }
    }
  }
  return { spec: { bits, group, zeros: false }, rows, K, values, scales };
}

/** W [rows, K] as f32: (q − z) · s, exact in f32. The CPU reference for the GPU kernels. */
export function dequantizeRows(q: QuantRows): Float32Array {
  const { bits, group } = q.spec;
  const { rows, K } = q;
  const groups = K / group;
  const kw = rowWords(K, bits);
  const mask = (1 << bits) - 1;
  const perWord = 32 / bits;
  const mid = 1 << (bits - 1);
  const out = new Float32Array(rows * K);
  for (let n = 0; n < rows; n++) {
    for (let g = 0; g < groups; g++) {
      const s = f16Value(q.scales[n * groups + g]);
      const z = q.zeros ? q.zeros[n * groups + g] : mid;
      let word = n * kw + (g * group) / perWord;
      let o = n * K + g * group;
      for (let w = 0; w < group / perWord; w++, word++) {
        const v = q.values[word];
        for (let i = 0; i < perWord; i++) out[o++] = Math.fround((((v >>> (i * bits)) & mask) - z) * s);
      }
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------
// Row stacking and splitting (q|k|v uploaded as one tensor; big tensors split in row chunks)

/**
 * Rows of several tensors stacked in order. They must share bits, group and K. If some carry zeros and
 * others use the implicit zero point, the result carries zeros, with 2^(bits−1) filled in for the latter.
 */
export function concatRows(parts: readonly QuantRows[]): QuantRows {
  if (parts.length === 0) throw new RangeError('concatRows: no parts to stack');
  const { bits, group } = parts[0].spec;
  const K = parts[0].K;
  parts.forEach((p, i) => {
    if (p.spec.bits !== bits || p.spec.group !== group || p.K !== K) {
      throw new RangeError(
        `concatRows: part ${i} has bits ${p.spec.bits}, group ${p.spec.group}, K ${p.K}; expected those of part 0: bits ${bits}, group ${group}, K ${K}`,
      );
    }
  });
  const rows = parts.reduce((a, p) => a + p.rows, 0);
  const groups = K / group;
  const kw = rowWords(K, bits);
  const withZeros = parts.some((p) => p.spec.zeros);
  const values = new Uint32Array(rows * kw);
  const scales = new Uint16Array(rows * groups);
  const zeros = withZeros ? new Uint8Array(rows * groups) : undefined;
  let r = 0;
  for (const p of parts) {
    values.set(p.values.subarray(0, p.rows * kw), r * kw);
    scales.set(p.scales.subarray(0, p.rows * groups), r * groups);
    if (zeros) {
      if (p.zeros) zeros.set(p.zeros.subarray(0, p.rows * groups), r * groups);
      else zeros.fill(1 << (bits - 1), r * groups, (r + p.rows) * groups);
    }
    r += p.rows;
  }
  const out: QuantRows = { spec: { bits, group, zeros: withZeros }, rows, K, values, scales };
  if (zeros) out.zeros = zeros;
  return out;
}

/** Rows [row0, row0 + rows) as views into q's arrays (no copy: a row is whole words). */
export function sliceRows(q: QuantRows, row0: number, rows: number): QuantRows {
  if (!Number.isInteger(row0) || !Number.isInteger(rows) || row0 < 0 || rows < 0 || row0 + rows > q.rows) {
    throw new RangeError(`sliceRows: rows [${row0}, ${row0 + rows}) are not within the tensor's ${q.rows} rows`);
  }
  const kw = rowWords(q.K, q.spec.bits);
  const groups = q.K / q.spec.group;
  const out: QuantRows = {
    spec: { ...q.spec },
    rows,
    K: q.K,
    values: q.values.subarray(row0 * kw, (row0 + rows) * kw),
    scales: q.scales.subarray(row0 * groups, (row0 + rows) * groups),
  };
  if (q.zeros) out.zeros = q.zeros.subarray(row0 * groups, (row0 + rows) * groups);
  return out;
}
