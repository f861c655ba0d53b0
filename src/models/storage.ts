// How a checkpoint tensor is stored on the GPU, and its upload, split along dim 0 into chunks that each
// fit maxStorageBufferBindingSize. The kernels read every weight format (shaders/weights/*.wgsl), so the
// checkpoint's own bytes go up as they are wherever the caller asks for nothing else:
//   dtype "auto" (default): F32 → f32; F16 → f16x2; BF16 → bf16x2 (two per u32, unpacked in the kernel:
//                core WGSL, exact; native f16 with `nativeF16` where the adapter has shader-f16).
//   "f32": everything widened to f32 (exact).   "f16" / "bf16": everything narrowed or re-rounded to it.
//   "q8" / "q4": linear weights (role "linear", K a multiple of 32) quantized at load, round to nearest,
//                symmetric, groups of 32 (src/io/quant.ts); the embedding table and the LM head (role
//                "table") to q8; everything else as "auto".
// One-dimensional tensors (norm weights, biases) and the operands kernels read as plain floats (`f32`:
// position tables) are f32 always: they are a tiny part of the bytes.
// Quantized checkpoints (AWQ, GPTQ) are converted to the same q4 / q8 layout (uploadQuant).
import type { Gpu } from '../gpu/device.ts';
import type { Chunk, DType, Quant } from '../graph/tensor.ts';
import { convertWeights, type Conversion } from '../ops/convert.ts';
import { quantizeRows, type QuantRows } from '../io/quant.ts';
import { toFloat32 } from '../io/decode.ts';

export type SourceDType = 'F32' | 'F16' | 'BF16';

export { WEIGHT_DTYPE_NAMES, type WeightDType } from './weight-dtype.ts';
import type { WeightDType } from './weight-dtype.ts';

/** Group length of the q8 / q4 quantization at load. */
export const LOAD_QUANT_GROUP = 32;

export interface UploadOptions {
  /** f32 whatever the preference (operands that kernels read as plain floats, e.g. position tables). */
  f32?: boolean;
  /** Storage preference; see the header. */
  dtype?: WeightDType;
  /** What reads the weight: a linear layer's matmul, or a table that is gathered and also multiplied (embeddings, LM head). */
  role?: 'linear' | 'table';
  /** 16-bit weights as native f16 (shader-f16) instead of u32 pairs. */
  nativeF16?: boolean;
}

/** How a weight is stored: its dtype, and for q4 / q8 its groups. */
export interface Storage {
  dtype: DType;
  quant?: Quant;
}

/** The storage of a checkpoint tensor of dtype `src` and `shape` under `opts` (see the header). */
export function storageOf(gpu: Gpu, src: SourceDType, shape: readonly number[], opts: UploadOptions = {}): Storage {
  const pref = opts.dtype ?? 'auto';
  if (opts.f32 || shape.length < 2 || pref === 'f32') return { dtype: 'f32' };
  const half = (kind: 'f16' | 'bf16'): Storage =>
    kind === 'f16' && opts.nativeF16 && gpu.has('shader-f16') ? { dtype: 'f16' } : { dtype: kind === 'f16' ? 'f16x2' : 'bf16x2' };
  if (pref === 'q8' || pref === 'q4') {
    const K = shape.slice(1).reduce((a, b) => a * b, 1);
    if (opts.role && shape.length === 2 && K % LOAD_QUANT_GROUP === 0) {
      return { dtype: opts.role === 'table' ? 'q8' : pref, quant: { group: LOAD_QUANT_GROUP, zeros: false } };
    }
  }
  if (pref === 'f16' || pref === 'bf16') return half(pref);
  if (src === 'F32') return { dtype: 'f32' };
  return half(src === 'F16' ? 'f16' : 'bf16');
}

/**
 * Splits `rows` rows of `rowBytes` each into chunks no larger than `limit` (the binding limit); with
 * `align` > 1, every chunk but the last holds a multiple of `align` rows (so that 16-bit rows of odd
 * length start a chunk on a word).
 */
export function chunkRows(limit: number, rows: number, rowBytes: number, what: string, align = 1): { row0: number; rows: number }[] {
  const fit = Math.floor(limit / Math.max(rowBytes, 1));
  const perChunk = fit >= rows ? fit : fit - (fit % align);
  if (perChunk < 1) {
    throw new Error(`${what}: one row takes ${rowBytes} bytes, more than maxStorageBufferBindingSize (${limit})`);
  }
  const out = [];
  for (let r = 0; r < rows; r += perChunk) out.push({ row0: r, rows: Math.min(perChunk, rows - r) });
  if (out.length === 0) out.push({ row0: 0, rows: 0 });
  return out;
}

const CONVERSIONS: Record<string, Conversion | undefined> = {
  'BF16>f32': 'bf16_to_f32',
  'F16>f32': 'f16_to_f32',
  'F32>f16': 'f32_to_f16',
  'BF16>f16': 'bf16_to_f16',
  'F32>bf16': 'f32_to_bf16',
  'F16>bf16': 'f16_to_bf16',
};

/** The source → storage conversion run on the GPU, if any ('same' when the bytes go up as they are). */
function conversionOf(src: SourceDType, dtype: DType): Conversion | 'same' {
  const kind = dtype === 'f32' ? 'f32' : dtype === 'bf16x2' ? 'bf16' : 'f16';
  if ((src === 'F32' && kind === 'f32') || (src === 'F16' && kind === 'f16') || (src === 'BF16' && kind === 'bf16')) return 'same';
  const c = CONVERSIONS[`${src}>${kind}`];
  if (!c) throw new Error(`no conversion from ${src} to ${dtype}`);
  return c;
}

export interface Uploaded extends Storage {
  chunks: Chunk[];
}

/** Uploads `bytes` (little-endian, as stored) of a tensor of `shape`, stored as `storageOf` decides. */
export async function uploadTensor(
  gpu: Gpu,
  name: string,
  bytes: Uint8Array,
  src: SourceDType,
  shape: readonly number[],
  opts: UploadOptions = {},
): Promise<Uploaded> {
  const storage = storageOf(gpu, src, shape, opts);
  const srcItem = src === 'F32' ? 4 : 2;
  const rows = shape.length ? shape[0] : 1;
  const rowElems = shape.slice(1).reduce((a, b) => a * b, 1);
  const expected = rows * rowElems * srcItem;
  if (bytes.byteLength !== expected) {
    throw new Error(`${name}: ${bytes.byteLength} bytes for shape [${shape.join(', ')}] ${src}, expected ${expected}`);
  }
  if (storage.quant) return uploadQuant(gpu, name, toQuantRows(name, bytes, src, shape, storage));
  const dstItem = storage.dtype === 'f32' ? 4 : 2;
  const conversion = conversionOf(src, storage.dtype);
  const chunks: Chunk[] = [];
  for (const c of chunkRows(gpu.maxBinding, rows, rowElems * dstItem, name, dstItem === 2 && rowElems % 2 ? 2 : 1)) {
    const part = bytes.subarray(c.row0 * rowElems * srcItem, (c.row0 + c.rows) * rowElems * srcItem);
    const label = chunks.length || c.rows !== rows ? `${name}[${c.row0}:${c.row0 + c.rows}]` : name;
    let buffer: GPUBuffer;
    if (conversion === 'same') {
      buffer = gpu.pool.upload(part, label);
    } else {
      const raw = gpu.pool.upload(part, `${label} (raw ${src})`);
      buffer = await convertWeights(gpu, raw, c.rows * rowElems, conversion, label);
      gpu.pool.destroy(raw);
    }
    chunks.push({ buffer, row0: c.row0, rows: c.rows });
  }
  return { ...storage, chunks };
}

/** Quantizes a float tensor (bytes as stored) at load to `storage` (q4 or q8, symmetric, its group). */
export function toQuantRows(name: string, bytes: Uint8Array, src: SourceDType, shape: readonly number[], storage: Storage): QuantRows {
  if (!storage.quant || (storage.dtype !== 'q4' && storage.dtype !== 'q8')) throw new Error(`${name}: ${storage.dtype} is not a quantized format`);
  const values = toFloat32({ name, dtype: src, shape: [...shape], file: name, begin: 0, end: bytes.byteLength }, bytes);
  const K = shape.slice(1).reduce((a, b) => a * b, 1);
  return quantizeRows(values, shape[0], K, storage.dtype === 'q4' ? 4 : 8, storage.quant.group, name);
}

/** Bytes of one chunk of `rows` rows of a quantized weight (codes, scales, zeros; see shaders/weights/q.wgsl). */
function quantChunkWords(q: QuantRows, rows: number): { values: number; scales: number; zeros: number } {
  const groups = rows * (q.K / q.spec.group);
  return {
    values: (rows * q.K * q.spec.bits) / 32,
    scales: Math.ceil(groups / 2),
    zeros: q.spec.zeros ? Math.ceil((groups * q.spec.bits) / 32) : 0,
  };
}

/**
 * Uploads a quantized weight in the layout of shaders/weights/q.wgsl: per chunk of rows, one buffer of
 * the codes, then the scales as f16 pairs, then (with zeros) the zero codes packed as the codes are.
 */
export function uploadQuant(gpu: Gpu, name: string, q: QuantRows): Uploaded {
  const { bits, group, zeros } = q.spec;
  const perRow = quantChunkWords(q, 1);
  const rowBytes = 4 * (perRow.values + perRow.scales + perRow.zeros);
  const groupsPerRow = q.K / group;
  const chunks: Chunk[] = [];
  // Two words of slack per chunk: the scale and zero arrays round up to whole words.
  for (const c of chunkRows(gpu.maxBinding - 8, q.rows, rowBytes, name)) {
    const w = quantChunkWords(q, c.rows);
    const words = new Uint32Array(Math.max(1, w.values + w.scales + w.zeros));
    const v0 = (c.row0 * q.K * bits) / 32;
    words.set(q.values.subarray(v0, v0 + w.values), 0);
    const g0 = c.row0 * groupsPerRow;
    const groups = c.rows * groupsPerRow;
    const scales = new Uint16Array(words.buffer, 4 * w.values, 2 * w.scales);
    scales.set(q.scales.subarray(g0, g0 + groups));
    if (zeros) {
      const per = 32 / bits;
      const zw = words.subarray(w.values + w.scales);
      for (let i = 0; i < groups; i++) zw[Math.floor(i / per)] |= q.zeros![g0 + i] << ((i % per) * bits);
    }
    const label = chunks.length || c.rows !== q.rows ? `${name}[${c.row0}:${c.row0 + c.rows}]` : name;
    chunks.push({ buffer: gpu.pool.upload(new Uint8Array(words.buffer), label), row0: c.row0, rows: c.rows });
  }
  return { dtype: bits === 4 ? 'q4' : 'q8', quant: { group, zeros }, chunks };
}
