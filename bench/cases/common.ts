// What every bench row shares (bench/cases/index.ts lists the rows): the row and peer types, the
// tolerances, small host helpers, and the shapes the rows are built at.
import { Float16Array } from '@petamoriken/float16';
import type { Gpu } from '../../src/gpu/device.ts';
import type { Graph } from '../../src/graph/graph.ts';
import type { Tensor } from '../../src/graph/tensor.ts';
import type { Idefics3Config } from '../../src/models/config.ts';
import { type Rng, assertClose, encode } from '../../test/data.ts';
import type { OnnxModel } from '../peers/onnx.ts';

export type HostType = 'float32' | 'float16' | 'int32' | 'int64';
/** A host tensor for onnxruntime's `new Tensor(type, data, dims)`; float16 data are IEEE half bits. */
export interface HostTensor {
  type: HostType;
  data: Float32Array | Uint16Array | Int32Array | BigInt64Array;
  dims: number[];
}

export interface PeerSide {
  /** The ONNX graph run by onnxruntime, in words. */
  graph: string;
  /** Where the peer computes at another precision than ours. */
  precision?: string;
  model: OnnxModel;
  feeds: Record<string, HostTensor>;
  output: string;
  /** Validates onnxruntime's output (as numbers) against the float64 reference; returns max |Δ|. */
  check: (y: ArrayLike<number>) => number;
}

export interface Setup {
  outputs: Tensor[];
  inputs: [Tensor, ArrayBufferView][];
  pos?: number;
  /** Validates our outputs; returns max |Δ|. */
  check: (out: (Float32Array | Uint32Array)[]) => number;
  /** The same computation for onnxruntime; absent on reference-variant rows of our own kernels. */
  peer?: PeerSide;
}

export interface PeerCase {
  name: string;
  kernel: string;
  flops: number;
  bytes: number;
  setup: (gpu: Gpu, g: Graph, rng: Rng) => Promise<Setup>;
}

export interface CaseOptions {
  quick: boolean;
  /** Linear layers as Gemm(x, W, transB=1) over the [N, K] checkpoint layout instead of MatMul(x, Wᵀ). */
  gemm: boolean;
}

export const TOL = { atol: 5e-5, rtol: 1e-4 };
/**
 * onnxruntime's fp16 rows compute in half precision throughout (inputs, products, sums, output). Summing K
 * products in f16 adds ~2⁻¹¹·√K of error per unit of output (these outputs have unit variance), ≈ 1.4e-2 at
 * K = 768; allow 8 times that. A wrong graph (layout, transpose) is off by O(1), far beyond it.
 */
export const f16Tol = (K: number) => ({ atol: 8 * 2 ** -11 * Math.sqrt(K), rtol: 1e-2 });

export const MS = { '': 17, 'com.microsoft': 1 };

export function lazy<T>(f: () => T): () => T {
  let v: T | undefined;
  let done = false;
  return () => {
    if (!done) {
      v = f();
      done = true;
    }
    return v as T;
  };
}

export const f32 = (data: Float32Array, dims: number[]): HostTensor => ({ type: 'float32', data, dims });
export const maxAbs = (a: ArrayLike<number>, b: ArrayLike<number>, tol: { atol: number; rtol?: number }, label: string) =>
  assertClose(a, b, tol, label).maxAbs;

/** [rows, cols] → [cols, rows]. */
export function transpose<T extends Float32Array | Uint16Array>(a: T, rows: number, cols: number): T {
  const out = new (a.constructor as new (n: number) => T)(a.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = a[r * cols + c];
  return out;
}

export function f16Bits(values: Float32Array): { bits: Uint16Array; rounded: Float32Array } {
  const { bytes, rounded } = encode(values, 'F16');
  return { bits: new Uint16Array(bytes.buffer, bytes.byteOffset, values.length), rounded: Float32Array.from(rounded) };
}

/** Half bits (onnxruntime's float16 output) or plain numbers, as numbers. */
export function asNumbers(data: ArrayLike<number> | BigInt64Array, type: string): ArrayLike<number> {
  if (type === 'float16') return new Float16Array((data as Uint16Array).buffer, (data as Uint16Array).byteOffset, (data as Uint16Array).length);
  if (data instanceof BigInt64Array) return Array.from(data, Number);
  return data as ArrayLike<number>;
}

/** The shapes the rows are built at, computed once from the config and the options (shapesOf). */
export interface Shapes {
  cfg: Idefics3Config;
  vc: Idefics3Config['vision_config'];
  tc: Idefics3Config['text_config'];
  /** The vision tower's patches per image. */
  patches: number;
  /** The prompt length of the prefill rows. */
  prefillT: number;
  /** The key/value rows of the decode attention and softmax rows. */
  kvLen: number;
  o: CaseOptions;
}

export function shapesOf(cfg: Idefics3Config, o: CaseOptions): Shapes {
  const vc = cfg.vision_config;
  const tc = cfg.text_config;
  const patches = (vc.image_size / vc.patch_size) ** 2;
  const prefillT = o.quick ? 55 : 1100;
  const kvLen = o.quick ? 64 : 1024;
  return { cfg, vc, tc, patches, prefillT, kvLen, o };
}
