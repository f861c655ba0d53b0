// Symbolic tensors of the computation graph. A tensor is produced by a node (an activation),
// supplied by the caller (an input), bound to uploaded weights, or bound to persistent state
// (the KV cache). Only activations are placed by the planner; the others own their buffers.
import type { Node } from './graph.ts';

/**
 * Element types. Activations are f32 (u32 for ids and maps). Weights may also be stored as
 * (shaders/weights/*.wgsl): f16 (native, shader-f16), f16x2 and bf16x2 (16-bit floats as checkpoints
 * store them, two per u32, unpacked in the kernel: core WGSL), or q4 / q8 (affine-quantized codes with
 * per-group scales and optional zeros; see Quant).
 */
export type DType = 'f32' | 'f16' | 'u32' | 'f16x2' | 'bf16x2' | 'q4' | 'q8';

/** The dtypes a weight read through a weight format may have (every kernel that reads W with w_at). */
export const WEIGHT_DTYPES: DType[] = ['f32', 'f16', 'f16x2', 'bf16x2', 'q4', 'q8'];

/** Bytes per element; the quantized formats' scales and zeros come on top. */
export const BYTES: Record<DType, number> = { f32: 4, f16: 2, u32: 4, f16x2: 2, bf16x2: 2, q4: 0.5, q8: 1 };

/** A quantized weight's groups: `group` consecutive k share a scale (and a zero code, with `zeros`). */
export interface Quant {
  group: number;
  /** Whether zero codes are stored; without, the zero point is 2^(bits−1) (symmetric). */
  zeros: boolean;
}

/**
 * A contiguous range of a tensor's outer dimension that lives in one GPU buffer. A weight larger than
 * maxStorageBufferBindingSize is split along dim 0 into several chunks; kernels reading it dispatch once
 * per chunk.
 */
export interface Chunk {
  buffer: GPUBuffer;
  /** First row (index along dim 0) held by this chunk. */
  row0: number;
  /** Number of rows held. */
  rows: number;
}

export type TensorKind = 'value' | 'input' | 'weight' | 'state';

export class Tensor {
  private static next = 0;
  readonly id = Tensor.next++;
  readonly shape: readonly number[];
  readonly dtype: DType;
  readonly kind: TensorKind;
  name: string;
  /** The node that produces it (activations, and state written by a node). */
  node?: Node;
  /** Buffers of weights and state, split along dim 0 when large. Activations are bound by the plan. */
  chunks?: Chunk[];
  /** A q4 / q8 weight's groups. */
  quant?: Quant;

  constructor(shape: readonly number[], dtype: DType, kind: TensorKind, name = '') {
    for (const d of shape) {
      if (!Number.isInteger(d) || d < 0) throw new Error(`tensor ${name || '?'}: invalid shape [${shape.join(', ')}]`);
    }
    this.shape = shape;
    this.dtype = dtype;
    this.kind = kind;
    this.name = name;
  }

  get size(): number {
    return this.shape.reduce((a, b) => a * b, 1);
  }

  get bytes(): number {
    return this.size * BYTES[this.dtype];
  }

  /** Elements per row of dim 0. */
  get rowSize(): number {
    return this.shape.slice(1).reduce((a, b) => a * b, 1);
  }

  dim(i: number): number {
    const d = this.shape[i < 0 ? this.shape.length + i : i];
    if (d === undefined) throw new Error(`tensor ${this.name}: no dimension ${i} in shape [${this.shape.join(', ')}]`);
    return d;
  }

  toString(): string {
    return `${this.name || `t${this.id}`}[${this.shape.join(', ')}] ${this.dtype}`;
  }
}

/** Checks a tensor's rank/shape/dtype against what an op needs; the message names the op and both shapes. */
export function expectShape(op: string, what: string, t: Tensor, shape: (number | null)[], dtypes?: DType[]): void {
  const ok = t.shape.length === shape.length && shape.every((d, i) => d === null || d === t.shape[i]);
  if (!ok) {
    const want = shape.map((d) => (d === null ? '*' : d)).join(', ');
    throw new Error(`${op}: ${what} ${t.name ? `"${t.name}" ` : ''}has shape [${t.shape.join(', ')}], expected [${want}]`);
  }
  if (dtypes && !dtypes.includes(t.dtype)) {
    throw new Error(`${op}: ${what} ${t.name ? `"${t.name}" ` : ''}has dtype ${t.dtype}, expected ${dtypes.join(' or ')}`);
  }
}
