// Uploads one checkpoint tensor to the GPU in the dtype the kernels read, split along dim 0 into
// chunks that each fit maxStorageBufferBindingSize. One path for every dtype; the bytes go up as
// stored and are converted on the GPU when the target differs:
//   weights "auto" (default): F32 → f32;  F16 → f16 where shader-f16 exists, else f32;  BF16 → f32 (exact).
//   weights "f32": everything f32.   weights "f16" (where shader-f16 exists): everything f16.
import type { Gpu } from '../gpu/device.ts';
import { type Chunk, type DType } from '../graph/tensor.ts';
import { convertWeights, type Conversion } from '../ops/convert.ts';

export type SourceDType = 'F32' | 'F16' | 'BF16';

export type WeightDType = 'auto' | 'f32' | 'f16';

export interface UploadOptions {
  /** Widen to f32 whatever the preference (operands that kernels read as f32, e.g. position tables). */
  f32?: boolean;
  /** Storage preference for float weights; see the header. */
  dtype?: WeightDType;
}

export function gpuDType(gpu: Gpu, src: SourceDType, opts: UploadOptions = {}): DType {
  if (opts.f32 || opts.dtype === 'f32' || !gpu.has('shader-f16')) return 'f32';
  if (opts.dtype === 'f16') return 'f16';
  return src === 'F16' ? 'f16' : 'f32';
}

/** Splits `rows` rows of `rowBytes` each into chunks no larger than the device's binding limit. */
export function chunkRows(gpu: Gpu, rows: number, rowBytes: number, what: string): { row0: number; rows: number }[] {
  const perChunk = Math.floor(gpu.maxBinding / Math.max(rowBytes, 1));
  if (perChunk < 1) {
    throw new Error(`${what}: one row takes ${rowBytes} bytes, more than maxStorageBufferBindingSize (${gpu.maxBinding})`);
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
};

/** Uploads `bytes` (little-endian, as stored) of a tensor of `shape`; returns its dtype and chunks. */
export async function uploadTensor(
  gpu: Gpu,
  name: string,
  bytes: Uint8Array,
  src: SourceDType,
  shape: readonly number[],
  opts: UploadOptions = {},
): Promise<{ dtype: DType; chunks: Chunk[] }> {
  const dtype = gpuDType(gpu, src, opts);
  const srcItem = src === 'F32' ? 4 : 2;
  const dstItem = dtype === 'f32' ? 4 : 2;
  const rows = shape.length ? shape[0] : 1;
  const rowElems = shape.slice(1).reduce((a, b) => a * b, 1);
  const expected = rows * rowElems * srcItem;
  if (bytes.byteLength !== expected) {
    throw new Error(`${name}: ${bytes.byteLength} bytes for shape [${shape.join(', ')}] ${src}, expected ${expected}`);
  }
  const chunks: Chunk[] = [];
  for (const c of chunkRows(gpu, rows, rowElems * dstItem, name)) {
    const part = bytes.subarray(c.row0 * rowElems * srcItem, (c.row0 + c.rows) * rowElems * srcItem);
    const label = chunks.length || c.rows !== rows ? `${name}[${c.row0}:${c.row0 + c.rows}]` : name;
    let buffer: GPUBuffer;
    const conversion = CONVERSIONS[`${src}>${dtype}`];
    if (!conversion) {
      buffer = gpu.pool.upload(part, label);
    } else {
      const raw = gpu.pool.upload(part, `${label} (raw ${src})`);
      buffer = await convertWeights(gpu, raw, c.rows * rowElems, conversion, label);
      gpu.pool.destroy(raw);
    }
    chunks.push({ buffer, row0: c.row0, rows: c.rows });
  }
  return { dtype, chunks };
}
