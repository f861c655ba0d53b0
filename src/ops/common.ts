// Helpers shared by the typed ops: uniform packing, dispatch grids, weight type aliases, chunks.
import type { BufferOf, Graph } from '../graph/graph.ts';
import type { Chunk, Tensor } from '../graph/tensor.ts';

/** A float field in a uniform struct (every other field is a u32). */
export class F32 {
  constructor(readonly value: number) {}
}
export const f32 = (v: number) => new F32(v);

/** Packs u32 and f32 fields into the words of a uniform struct, padded to 16 bytes. */
export function uniforms(...fields: (number | F32)[]): Uint32Array {
  const out = new Uint32Array(Math.ceil(fields.length / 4) * 4);
  const f = new Float32Array(out.buffer);
  fields.forEach((v, i) => {
    if (v instanceof F32) f[i] = v.value;
    else {
      if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) throw new RangeError(`uniform field ${i}: ${v} is not a u32`);
      out[i] = v;
    }
  });
  return out;
}

const MAX_GROUPS = 65535;

/** Workgroup grid covering `count` invocations of a 1-D kernel with `wg` invocations per group. */
export function grid1d(count: number, wg: number): [number, number] {
  const groups = Math.ceil(count / wg);
  if (groups <= MAX_GROUPS) return [groups, 1];
  return [MAX_GROUPS, Math.ceil(groups / MAX_GROUPS)];
}

/** A grid of one workgroup per row, folded into y past 65535 rows (kernels use wg.x + wg.y·65535). */
export function gridRows(rows: number): [number, number] {
  return rows <= MAX_GROUPS ? [rows, 1] : [MAX_GROUPS, Math.ceil(rows / MAX_GROUPS)];
}

/** WGSL element type of a weight tensor that a kernel reads as an array of f32 or f16 (norms). */
export function wgslType(t: Tensor): 'f32' | 'f16' {
  if (t.dtype !== 'f32' && t.dtype !== 'f16') throw new Error(`${t}: read as an array of floats, but stored as ${t.dtype}`);
  return t.dtype === 'f16' ? 'f16' : 'f32';
}

/**
 * How a kernel reads a weight (shaders/weights/*.wgsl): the format file and, for q4 / q8, its override
 * constants (bits, group length, whether zeros are stored).
 */
export function weightFormat(t: Tensor): { weight: string; constants: Record<string, number> } {
  switch (t.dtype) {
    case 'f32':
    case 'f16':
    case 'f16x2':
    case 'bf16x2':
      return { weight: t.dtype, constants: {} };
    case 'q4':
    case 'q8': {
      if (!t.quant) throw new Error(`${t}: a quantized weight without its groups`);
      return { weight: 'q', constants: { QBITS: t.dtype === 'q4' ? 4 : 8, QG: t.quant.group, QZ: t.quant.zeros ? 1 : 0 } };
    }
    default:
      throw new Error(`${t}: ${t.dtype} is not a weight format`);
  }
}

/** Whether two weights are read by one kernel alike (same format, groups and zeros). */
export function sameFormat(a: Tensor, b: Tensor): boolean {
  return a.dtype === b.dtype && a.quant?.group === b.quant?.group && a.quant?.zeros === b.quant?.zeros;
}

/** The row chunks of a tensor: a split weight's own, or one chunk covering an activation. */
export function chunksOf(t: Tensor, buf: BufferOf): Chunk[] {
  if (t.chunks) return t.chunks;
  return [{ buffer: buf(t), row0: 0, rows: t.shape[0] ?? 1 }];
}

/** The single buffer of a tensor that kernels cannot read in chunks (norm weights, biases). */
export function whole(op: string, t: Tensor, buf: BufferOf): GPUBuffer {
  if (t.chunks && t.chunks.length > 1) throw new Error(`${op}: ${t} is split in ${t.chunks.length} chunks; this operand must fit one binding`);
  return t.chunks ? t.chunks[0].buffer : buf(t);
}

/** A row-wise op's kernel choice: a workgroup reduction per row, or (SIMD-on-CPU devices) the *_rows entries. */
export type RowOpVariant = 'auto' | 'workgroup' | 'rows';

/** Whether a row-wise op over rows of width D takes its *_rows entry (vec4 reads: D % 4 == 0). */
export function useRowsEntry(g: Graph, op: string, D: number, variant: RowOpVariant): boolean {
  if (variant === 'rows' && D % 4 !== 0) throw new Error(`${op}: the rows variant reads vec4s and needs the width (${D}) to be a multiple of 4`);
  return variant === 'rows' || (variant === 'auto' && g.tuning.target === 'cpu' && D % 4 === 0);
}
