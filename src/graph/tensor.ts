// Symbolic tensors of the computation graph. A tensor is produced by a node (an activation),
// supplied by the caller (an input), bound to uploaded weights, or bound to persistent state
// (the KV cache). Only activations are placed by the planner; the others own their buffers.
import type { Node } from './graph.ts';

export type DType = 'f32' | 'f16' | 'u32';

export const BYTES: Record<DType, number> = { f32: 4, f16: 2, u32: 4 };

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
