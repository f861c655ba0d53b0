// The benchmark rows at SmolVLM-256M shapes (or the tiny fixture's with `quick`), shared by the kernel
// bench (bench/kernels.bench.ts) and the peer bench (bench/peers/ort.bench.ts). Each row builds our
// graph through the ops, with seeded data and a float64 reference to validate against, and, unless it is
// a reference variant of one of our kernels, the same computation as an ONNX graph for onnxruntime's
// WebGPU execution provider, fed the same values. flops and bytes are napkin math (every operand read
// once, the output written once) for the roofline.
import { Float16Array } from '@petamoriken/float16';
import type { Gpu } from '../src/gpu/device.ts';
import type { Graph } from '../src/graph/graph.ts';
import type { Tensor } from '../src/graph/tensor.ts';
import type { Idefics3Config } from '../src/models/config.ts';
import { linear, matmulNode } from '../src/ops/matmul.ts';
import { rmsNorm, layerNorm } from '../src/ops/norm.ts';
import { softmax } from '../src/ops/softmax.ts';
import { activation, add, siluMul, ACT } from '../src/ops/elementwise.ts';
import { rope, ropeQKV, ropeInvFreq } from '../src/ops/rope.ts';
import { attention, attentionOperand } from '../src/ops/attention.ts';
import { patchEmbed } from '../src/ops/patch-embed.ts';
import { pixelShuffleProject } from '../src/ops/projector.ts';
import { embed, classPosition, NEWLINE_ROW, NOT_IMAGE } from '../src/ops/embedding.ts';
import { gluGemv } from '../src/ops/gemv.ts';
import { argmax } from '../src/ops/sample.ts';
import type { SourceDType } from '../src/models/storage.ts';
import { Rng, assertClose, encode, quantWeight, weight } from '../test/data.ts';
import { f16Value, type QuantSpec } from '../src/io/quant.ts';
import { linear64, rmsNorm64, layerNorm64, softmax64, act64, rope64, attention64, embed64, argmax64 } from '../test/ops/reference.ts';
import { DT, type OnnxModel, type OnnxInitializer } from './peers/onnx.ts';

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

const TOL = { atol: 5e-5, rtol: 1e-4 };
/**
 * onnxruntime's fp16 rows compute in half precision throughout (inputs, products, sums, output). Summing K
 * products in f16 adds ~2⁻¹¹·√K of error per unit of output (these outputs have unit variance), ≈ 1.4e-2 at
 * K = 768; allow 8 times that. A wrong graph (layout, transpose) is off by O(1), far beyond it.
 */
const f16Tol = (K: number) => ({ atol: 8 * 2 ** -11 * Math.sqrt(K), rtol: 1e-2 });

const MS = { '': 17, 'com.microsoft': 1 };

function lazy<T>(f: () => T): () => T {
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

const f32 = (data: Float32Array, dims: number[]): HostTensor => ({ type: 'float32', data, dims });
const maxAbs = (a: ArrayLike<number>, b: ArrayLike<number>, tol: { atol: number; rtol?: number }, label: string) =>
  assertClose(a, b, tol, label).maxAbs;

/** [rows, cols] → [cols, rows]. */
function transpose<T extends Float32Array | Uint16Array>(a: T, rows: number, cols: number): T {
  const out = new (a.constructor as new (n: number) => T)(a.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = a[r * cols + c];
  return out;
}

function f16Bits(values: Float32Array): { bits: Uint16Array; rounded: Float32Array } {
  const { bytes, rounded } = encode(values, 'F16');
  return { bits: new Uint16Array(bytes.buffer, bytes.byteOffset, values.length), rounded: Float32Array.from(rounded) };
}

/** Half bits (onnxruntime's float16 output) or plain numbers, as numbers. */
export function asNumbers(data: ArrayLike<number> | BigInt64Array, type: string): ArrayLike<number> {
  if (type === 'float16') return new Float16Array((data as Uint16Array).buffer, (data as Uint16Array).byteOffset, (data as Uint16Array).length);
  if (data instanceof BigInt64Array) return Array.from(data, Number);
  return data as ArrayLike<number>;
}

/** The linear-layer ONNX graph over weights `w` stored [N, K] (the checkpoint layout). */
function linearGraph(
  gemm: boolean,
  M: number,
  K: number,
  N: number,
  w: Float32Array | Uint16Array,
  type: typeof DT.FLOAT | typeof DT.FLOAT16,
  extra: { nodes: OnnxModel['nodes']; out: string } | null,
): { model: OnnxModel; graph: string } {
  const init: OnnxInitializer = gemm ? { name: 'w', shape: [N, K], type, data: w } : { name: 'w', shape: [K, N], type, data: transpose(w, N, K) };
  const node = gemm
    ? { op: 'Gemm', inputs: ['x', 'w'], outputs: [extra ? 'h' : 'y'], attrs: { transB: 1 } }
    : { op: 'MatMul', inputs: ['x', 'w'], outputs: [extra ? 'h' : 'y'] };
  return {
    model: {
      nodes: [node, ...(extra?.nodes ?? [])],
      inputs: [{ name: 'x', shape: [M, K], type }],
      outputs: [{ name: 'y', shape: [M, N], type }],
      initializers: [init],
      opsets: { '': 20 },
    },
    graph: gemm ? 'Gemm(x, W [N,K], transB=1)' : 'MatMul(x, Wᵀ [K,N] initializer)',
  };
}

export function makeCases(cfg: Idefics3Config, o: CaseOptions): PeerCase[] {
  const vc = cfg.vision_config;
  const tc = cfg.text_config;
  const patches = (vc.image_size / vc.patch_size) ** 2;
  const prefillT = o.quick ? 55 : 1100;
  const kvLen = o.quick ? 64 : 1024;

  function linearCase(
    name: string,
    M: number,
    K: number,
    N: number,
    dtype: SourceDType,
    act: 'none' | 'gelu_tanh' = 'none',
    variant?: 'tiled' | 'gemv' | 'rows',
  ): PeerCase {
    const wBytes = dtype === 'F16' ? 2 : 4;
    return {
      name: `${name} ${M}×${K}·${N}×${K}ᵀ ${dtype}${act !== 'none' ? ` +${act}` : ''}`,
      kernel: variant ?? (M <= 4 ? 'gemv' : 'matmul'),
      flops: 2 * M * N * K,
      bytes: 4 * M * K + wBytes * N * K + 4 * M * N,
      async setup(gpu, g, rng) {
        const label = this.name;
        const xv = rng.array(M * K);
        const wv = rng.array(N * K, 1 / Math.sqrt(K));
        const w = await weight(gpu, g, 'w', [N, K], wv, dtype);
        const x = g.input('x', [M, K], 'f32');
        const ref = lazy(() => linear64(xv, w.v, M, N, K, undefined, ACT[act]));
        const gelu = act === 'gelu_tanh' ? { nodes: [{ op: 'Gelu', inputs: ['h'], outputs: ['y'], attrs: { approximate: { string: 'tanh' } } }], out: 'y' } : null;
        let peer: PeerSide;
        if (dtype === 'F32') {
          const { model, graph } = linearGraph(o.gemm, M, K, N, wv, DT.FLOAT, gelu);
          peer = {
            graph: graph + (gelu ? ' → Gelu(tanh)' : ''),
            model,
            feeds: { x: f32(xv, [M, K]) },
            output: 'y',
            check: (y) => maxAbs(y, ref(), TOL, `ORT ${label}`),
          };
        } else {
          // onnxruntime has no f16-weight × f32-activation MatMul: its fp16 path is all-fp16.
          const wh = f16Bits(wv);
          const xh = f16Bits(xv);
          const { model, graph } = linearGraph(o.gemm, M, K, N, wh.bits, DT.FLOAT16, gelu);
          const ref16 = lazy(() => linear64(xh.rounded, Float64Array.from(wh.rounded), M, N, K, undefined, ACT[act]));
          peer = {
            graph,
            precision: 'fp16 activations, weights and output (ours: f16 weights, f32 activations)',
            model,
            feeds: { x: { type: 'float16', data: xh.bits, dims: [M, K] } },
            output: 'y',
            check: (y) => maxAbs(y, ref16(), f16Tol(K), `ORT ${label}`),
          };
        }
        return {
          outputs: [linear(g, x, w.t, { act, variant })],
          inputs: [[x, xv]],
          check: ([y]) => maxAbs(y, ref(), TOL, label),
          peer: variant ? undefined : peer,
        };
      },
    };
  }

  /**
   * A linear layer over a compact weight: BF16 as stored (u32 pairs), or q8 / q4 (groups of 32, symmetric,
   * as at load) or AWQ-like q4 (groups of 128 with zeros; 64 where 128 does not divide K). The q4 rows of groups of 32 have onnxruntime's
   * MatMulNBits (4 bits, blocks of 32, the same codes and zero point 8, f32 scales) as their peer.
   */
  function compactLinearCase(name: string, M: number, K: number, N: number, fmt: 'BF16' | 'q8' | 'q4' | 'AWQ q4', variant?: 'tiled' | 'gemv' | 'rows'): PeerCase {
    const spec: QuantSpec | undefined =
      fmt === 'q8' ? { bits: 8, group: 32, zeros: false } : fmt === 'q4' ? { bits: 4, group: 32, zeros: false } : fmt === 'AWQ q4' ? { bits: 4, group: K % 128 === 0 ? 128 : 64, zeros: true } : undefined;
    const groups = spec ? (N * K) / spec.group : 0;
    const wBytes = spec ? (N * K * spec.bits) / 8 + 2 * groups + (spec.zeros ? (groups * spec.bits) / 8 : 0) : 2 * N * K;
    return {
      name: `${name} ${M}×${K}·${N}×${K}ᵀ ${fmt}${spec ? ` g${spec.group}` : ''}`,
      kernel: variant ?? (M <= 4 ? 'gemv' : 'matmul'),
      flops: 2 * M * N * K,
      bytes: 4 * M * K + wBytes + 4 * M * N,
      async setup(gpu, g, rng) {
        const label = this.name;
        const xv = rng.array(M * K);
        const qw = spec ? quantWeight(gpu, g, 'w', N, K, rng, spec, 1 / Math.sqrt(K) / (1 << (spec.bits - 2))) : undefined;
        const w = qw ?? (await weight(gpu, g, 'w', [N, K], rng.array(N * K, 1 / Math.sqrt(K)), 'BF16'));
        const x = g.input('x', [M, K], 'f32');
        const ref = lazy(() => linear64(xv, w.v, M, N, K));
        let peer: PeerSide | undefined;
        if (fmt === 'q4' && !variant && qw) {
          // MatMulNBits: B [N, K/32, 16] bytes, value 2i in the low nibble of byte i (our codes' bytes as they are).
          const q = qw.q;
          const scales = Float32Array.from(q.scales, f16Value);
          peer = {
            graph: 'MatMulNBits(x, B [N, K/32, 16] u8, scales [N·K/32] f32), bits 4, block 32, zero point 8',
            model: {
              nodes: [{ op: 'MatMulNBits', domain: 'com.microsoft', inputs: ['x', 'B', 'scales'], outputs: ['y'], attrs: { K, N, bits: 4, block_size: 32 } }],
              inputs: [{ name: 'x', shape: [M, K] }],
              outputs: [{ name: 'y', shape: [M, N] }],
              initializers: [
                { name: 'B', shape: [N, K / 32, 16], type: DT.UINT8, data: new Uint8Array(q.values.buffer, q.values.byteOffset, q.values.byteLength) },
                { name: 'scales', shape: [(N * K) / 32], data: scales },
              ],
              opsets: { '': 17, 'com.microsoft': 1 },
            },
            feeds: { x: f32(xv, [M, K]) },
            output: 'y',
            check: (y) => maxAbs(y, ref(), TOL, `ORT ${label}`),
          };
        }
        return { outputs: [linear(g, x, w.t, { variant })], inputs: [[x, xv]], check: ([y]) => maxAbs(y, ref(), TOL, label), peer };
      },
    };
  }

  /** The compact formats' rows at one shape. */
  const compactRows = (name: string, K: number, N: number) =>
    (['BF16', 'q8', 'q4', 'AWQ q4'] as const).map((fmt) => compactLinearCase(name, 1, K, N, fmt));

  return [
    {
      name: `patch embedding ${vc.num_channels}×${vc.image_size}² /${vc.patch_size} → ${vc.hidden_size} (+bias +pos)`,
      kernel: 'matmul (im2col)',
      flops: 2 * patches * vc.hidden_size * vc.num_channels * vc.patch_size ** 2,
      bytes: 4 * (vc.num_channels * vc.image_size ** 2 + vc.hidden_size * vc.num_channels * vc.patch_size ** 2 + 2 * patches * vc.hidden_size),
      async setup(gpu, g, rng) {
        const [C, S, P, D] = [vc.num_channels, vc.image_size, vc.patch_size, vc.hidden_size];
        const pix = rng.array(C * S * S);
        const wv = rng.array(D * C * P * P, 0.05);
        const bv = rng.array(D, 0.02);
        const pv = rng.array(patches * D, 0.1);
        const w = await weight(gpu, g, 'conv', [D, C, P, P], wv);
        const b = await weight(gpu, g, 'bias', [D], bv);
        const pos = await weight(gpu, g, 'pos', [patches, D], pv);
        const x = g.input('pixels', [1, C, S, S], 'f32');
        const ref = lazy(() => {
          const K = C * P * P;
          const cols = new Float32Array(patches * K);
          const gw = S / P;
          for (let p = 0; p < patches; p++)
            for (let c = 0; c < C; c++)
              for (let ky = 0; ky < P; ky++)
                for (let kx = 0; kx < P; kx++)
                  cols[p * K + (c * P + ky) * P + kx] = pix[(c * S + Math.floor(p / gw) * P + ky) * S + (p % gw) * P + kx];
          const r = linear64(cols, w.v, patches, D, K, b.v);
          for (let i = 0; i < r.length; i++) r[i] += pos.v[i];
          return r;
        });
        return {
          outputs: [patchEmbed(g, x, w.t, b.t, pos.t)],
          inputs: [[x, pix]],
          check: ([y]) => maxAbs(y, ref(), TOL, 'patch embedding'),
          peer: {
            graph: 'Conv(stride P, +bias) → Reshape [D, patches] → Transpose → Add(pos)',
            model: {
              nodes: [
                { op: 'Conv', inputs: ['x', 'w', 'b'], outputs: ['c'], attrs: { kernel_shape: { ints: [P, P] }, strides: { ints: [P, P] } } },
                { op: 'Reshape', inputs: ['c', 'shape'], outputs: ['r'] },
                { op: 'Transpose', inputs: ['r'], outputs: ['t'], attrs: { perm: { ints: [1, 0] } } },
                { op: 'Add', inputs: ['t', 'pos'], outputs: ['y'] },
              ],
              inputs: [{ name: 'x', shape: [1, C, S, S] }],
              outputs: [{ name: 'y', shape: [patches, D] }],
              initializers: [
                { name: 'w', shape: [D, C, P, P], data: wv },
                { name: 'b', shape: [D], data: bv },
                { name: 'shape', shape: [2], type: DT.INT64, data: BigInt64Array.from([BigInt(D), BigInt(patches)]) },
                { name: 'pos', shape: [patches, D], data: pv },
              ],
            },
            feeds: { x: f32(pix, [1, C, S, S]) },
            output: 'y',
            check: (y) => maxAbs(y, ref(), TOL, 'ORT patch embedding'),
          },
        };
      },
    },
    linearCase('vit q_proj', patches, vc.hidden_size, vc.hidden_size, 'F32'),
    linearCase('vit q_proj', patches, vc.hidden_size, vc.hidden_size, 'F16'),
    linearCase('vit q_proj (tiled, reference variant)', patches, vc.hidden_size, vc.hidden_size, 'F32', 'none', 'tiled'),
    linearCase('vit fc1', patches, vc.hidden_size, vc.intermediate_size, 'F32', 'gelu_tanh'),
    {
      name: `vit attention T=${patches} ${vc.num_attention_heads}×${vc.hidden_size / vc.num_attention_heads} bidirectional`,
      kernel: 'attention',
      flops: 4 * patches * patches * vc.hidden_size,
      bytes: 4 * 4 * patches * vc.hidden_size,
      async setup(_gpu, g, rng) {
        const [T, D, H] = [patches, vc.hidden_size, vc.num_attention_heads];
        const [qv, kv, vv] = [rng.array(T * D), rng.array(T * D), rng.array(T * D)];
        const q = g.input('q', [T, D], 'f32');
        const k = g.input('k', [T, D], 'f32');
        const v = g.input('v', [T, D], 'f32');
        const ref = lazy(() => attention64(qv, kv, vv, T, H, H, D / H, () => T - 1));
        return {
          outputs: [attention(g, q, k, v, { heads: H, kvHeads: H, causal: false })],
          inputs: [[q, qv], [k, kv], [v, vv]],
          check: ([y]) => maxAbs(y, ref(), TOL, 'vit attention'),
          peer: {
            graph: 'com.microsoft MultiHeadAttention(q, k, v [1,T,D], num_heads)',
            model: {
              nodes: [{ op: 'MultiHeadAttention', domain: 'com.microsoft', inputs: ['q', 'k', 'v'], outputs: ['y'], attrs: { num_heads: H } }],
              inputs: ['q', 'k', 'v'].map((name) => ({ name, shape: [1, T, D] })),
              outputs: [{ name: 'y', shape: [1, T, D] }],
              opsets: MS,
            },
            feeds: { q: f32(qv, [1, T, D]), k: f32(kv, [1, T, D]), v: f32(vv, [1, T, D]) },
            output: 'y',
            check: (y) => maxAbs(y, ref(), TOL, 'ORT vit attention'),
          },
        };
      },
    },
    ...(['auto', 'workgroup'] as const).map((variant): PeerCase => ({
      name: `layernorm ${patches}×${vc.hidden_size}${variant === 'workgroup' ? ' (workgroup reduction, reference variant)' : ''}`,
      kernel: 'norm',
      flops: 8 * patches * vc.hidden_size,
      bytes: 4 * (3 * patches * vc.hidden_size + 2 * vc.hidden_size),
      async setup(gpu, g, rng) {
        const [R, D] = [patches, vc.hidden_size];
        const xv = rng.array(R * D);
        const wv = rng.array(D, 0.1);
        const bv = rng.array(D, 0.1);
        const w = await weight(gpu, g, 'w', [D], wv);
        const b = await weight(gpu, g, 'b', [D], bv);
        const x = g.input('x', [R, D], 'f32');
        const ref = lazy(() => layerNorm64(xv, w.v, b.v, R, D, vc.layer_norm_eps));
        return {
          outputs: [layerNorm(g, x, w.t, b.t, vc.layer_norm_eps, variant)],
          inputs: [[x, xv]],
          check: ([y]) => maxAbs(y, ref(), TOL, 'layernorm'),
          peer: variant !== 'auto' ? undefined : {
            graph: 'LayerNormalization(axis -1) [opset 17]',
            model: {
              nodes: [{ op: 'LayerNormalization', inputs: ['x', 'w', 'b'], outputs: ['y'], attrs: { axis: -1, epsilon: { float: vc.layer_norm_eps } } }],
              inputs: [{ name: 'x', shape: [R, D] }],
              outputs: [{ name: 'y', shape: [R, D] }],
              initializers: [
                { name: 'w', shape: [D], data: wv },
                { name: 'b', shape: [D], data: bv },
              ],
            },
            feeds: { x: f32(xv, [R, D]) },
            output: 'y',
            check: (y) => maxAbs(y, ref(), TOL, 'ORT layernorm'),
          },
        };
      },
        })),
    {
      name: `gelu_tanh ${patches}×${vc.intermediate_size}`,
      kernel: 'elementwise',
      flops: 10 * patches * vc.intermediate_size,
      bytes: 8 * patches * vc.intermediate_size,
      async setup(_gpu, g, rng) {
        const [R, D] = [patches, vc.intermediate_size];
        const xv = rng.array(R * D, 3);
        const x = g.input('x', [R, D], 'f32');
        const ref = lazy(() => Float64Array.from(xv, (v) => act64(v, ACT.gelu_tanh)));
        return {
          outputs: [activation(g, x, 'gelu_tanh')],
          inputs: [[x, xv]],
          check: ([y]) => maxAbs(y, ref(), TOL, 'gelu'),
          peer: {
            graph: "Gelu(approximate='tanh') [opset 20]",
            model: {
              nodes: [{ op: 'Gelu', inputs: ['x'], outputs: ['y'], attrs: { approximate: { string: 'tanh' } } }],
              inputs: [{ name: 'x', shape: [R, D] }],
              outputs: [{ name: 'y', shape: [R, D] }],
              opsets: { '': 20 },
            },
            feeds: { x: f32(xv, [R, D]) },
            output: 'y',
            check: (y) => maxAbs(y, ref(), TOL, 'ORT gelu'),
          },
        };
      },
    },
    ...(['auto', 'tiled'] as const).map((variant): PeerCase => ({
      name: `projector ${patches}×${vc.hidden_size} shuffle ×${cfg.scale_factor} → ${patches / cfg.scale_factor ** 2}×${tc.hidden_size}${variant === 'tiled' ? ' (tiled, reference variant)' : ''}`,
      kernel: 'matmul (pixel shuffle)',
      flops: 2 * patches * vc.hidden_size * tc.hidden_size,
      bytes: 4 * (patches * vc.hidden_size + tc.hidden_size * vc.hidden_size * cfg.scale_factor ** 2 + (patches / cfg.scale_factor ** 2) * tc.hidden_size),
      async setup(gpu, g, rng) {
        const [E, s, N] = [vc.hidden_size, cfg.scale_factor, tc.hidden_size];
        const K = E * s * s;
        const M = patches / (s * s);
        const gw = Math.sqrt(patches);
        const bw = gw / s;
        const xv = rng.array(patches * E);
        const wv = rng.array(N * K, 1 / Math.sqrt(K));
        const w = await weight(gpu, g, 'proj', [N, K], wv);
        const x = g.input('x', [patches, E], 'f32');
        const ref = lazy(() => {
          const shuffled = new Float32Array(M * K);
          for (let r = 0; r < M; r++)
            for (let i = 0; i < s; i++)
              for (let j = 0; j < s; j++)
                for (let c = 0; c < E; c++)
                  shuffled[r * K + (i * s + j) * E + c] = xv[((Math.floor(r / bw) * s + i) * gw + (r % bw) * s + j) * E + c];
          return linear64(shuffled, w.v, M, N, K);
        });
        const i64 = (a: number[]) => BigInt64Array.from(a.map(BigInt));
        const lin = linearGraph(o.gemm, M, K, N, wv, DT.FLOAT, null);
        return {
          outputs: [pixelShuffleProject(g, x, w.t, s, 1, variant)],
          inputs: [[x, xv]],
          check: ([y]) => maxAbs(y, ref(), TOL, 'projector'),
          peer: variant === 'tiled' ? undefined : {
            graph: `Reshape [${bw},${s},${bw},${s},E] → Transpose(0,2,1,3,4) → Reshape [M, s²E] → ${lin.graph}`,
            model: {
              ...lin.model,
              nodes: [
                { op: 'Reshape', inputs: ['x0', 'shape5'], outputs: ['r5'] },
                { op: 'Transpose', inputs: ['r5'], outputs: ['t5'], attrs: { perm: { ints: [0, 2, 1, 3, 4] } } },
                { op: 'Reshape', inputs: ['t5', 'shape2'], outputs: ['x'] },
                ...lin.model.nodes,
              ],
              inputs: [{ name: 'x0', shape: [patches, E] }],
              initializers: [
                ...lin.model.initializers!,
                { name: 'shape5', shape: [5], type: DT.INT64, data: i64([bw, s, bw, s, E]) },
                { name: 'shape2', shape: [2], type: DT.INT64, data: i64([M, K]) },
              ],
            },
            feeds: { x0: f32(xv, [patches, E]) },
            output: 'y',
            check: (y) => maxAbs(y, ref(), TOL, 'ORT projector'),
          },
        };
      },
    })),
    linearCase('prefill gate_proj', prefillT, tc.hidden_size, tc.intermediate_size, 'F32'),
    linearCase('prefill gate_proj', prefillT, tc.hidden_size, tc.intermediate_size, 'F16'),
    {
      name: `prefill attention T=${prefillT} ${tc.num_attention_heads}/${tc.num_key_value_heads} heads ×${tc.head_dim} causal`,
      kernel: 'attention',
      flops: 2 * prefillT * prefillT * tc.num_attention_heads * tc.head_dim /* causal: half of 4·T²·H·d */,
      bytes: 4 * prefillT * (2 * tc.num_attention_heads + 2 * tc.num_key_value_heads) * tc.head_dim,
      async setup(_gpu, g, rng) {
        const [T, H, KV, d] = [prefillT, tc.num_attention_heads, tc.num_key_value_heads, tc.head_dim];
        const [qv, kv, vv] = [rng.array(T * H * d), rng.array(T * KV * d), rng.array(T * KV * d)];
        const q = g.input('q', [T, H * d], 'f32');
        const k = g.input('k', [T, KV * d], 'f32');
        const v = g.input('v', [T, KV * d], 'f32');
        const ref = lazy(() => attention64(qv, kv, vv, T, H, KV, d, (t) => t));
        return {
          outputs: [attention(g, q, k, v, { heads: H, kvHeads: KV, causal: true })],
          inputs: [[q, qv], [k, kv], [v, vv]],
          check: ([y]) => maxAbs(y, ref(), TOL, 'prefill attention'),
          peer: gqa(H, KV, d, T, 0, qv, kv, vv, (y) => maxAbs(y, ref(), TOL, 'ORT prefill attention')),
        };
      },
    },
    ((): PeerCase => {
      // Mistral's sliding window, a quarter of the prompt: each query sees at most W keys.
      const W = Math.max(1, Math.floor(prefillT / 4));
      const seen = Array.from({ length: prefillT }, (_, t) => Math.min(t + 1, W)).reduce((a, b) => a + b, 0);
      return {
        name: `prefill attention T=${prefillT} ${tc.num_attention_heads}/${tc.num_key_value_heads} heads ×${tc.head_dim} causal, sliding window ${W}`,
        kernel: 'attention',
        flops: 4 * seen * tc.num_attention_heads * tc.head_dim,
        bytes: 4 * prefillT * (2 * tc.num_attention_heads + 2 * tc.num_key_value_heads) * tc.head_dim,
        async setup(_gpu, g, rng) {
          const [T, H, KV, d] = [prefillT, tc.num_attention_heads, tc.num_key_value_heads, tc.head_dim];
          const [qv, kv, vv] = [rng.array(T * H * d), rng.array(T * KV * d), rng.array(T * KV * d)];
          const q = g.input('q', [T, H * d], 'f32');
          const k = g.input('k', [T, KV * d], 'f32');
          const v = g.input('v', [T, KV * d], 'f32');
          const ref = lazy(() => attention64(qv, kv, vv, T, H, KV, d, (t) => t, (t) => Math.max(0, t + 1 - W)));
          return {
            outputs: [attention(g, q, k, v, { heads: H, kvHeads: KV, causal: true, window: W })],
            inputs: [[q, qv], [k, kv], [v, vv]],
            check: ([y]) => maxAbs(y, ref(), TOL, 'sliding-window attention'),
          };
        },
      };
    })(),
    {
      name: `rmsnorm ${prefillT}×${tc.hidden_size}`,
      kernel: 'norm',
      flops: 4 * prefillT * tc.hidden_size,
      bytes: 4 * (2 * prefillT * tc.hidden_size + tc.hidden_size),
      async setup(gpu, g, rng) {
        const [R, D] = [prefillT, tc.hidden_size];
        const xv = rng.array(R * D);
        const wv = rng.array(D, 0.1);
        const w = await weight(gpu, g, 'w', [D], wv);
        const x = g.input('x', [R, D], 'f32');
        const ref = lazy(() => rmsNorm64(xv, w.v, R, D, tc.rms_norm_eps));
        return {
          outputs: [rmsNorm(g, x, w.t, tc.rms_norm_eps)],
          inputs: [[x, xv]],
          check: ([y]) => maxAbs(y, ref(), TOL, 'rmsnorm'),
          peer: {
            graph: 'SimplifiedLayerNormalization(axis -1) (RMSNormalization-23 also runs on the EP)',
            model: {
              nodes: [{ op: 'SimplifiedLayerNormalization', inputs: ['x', 'w'], outputs: ['y'], attrs: { axis: -1, epsilon: { float: tc.rms_norm_eps } } }],
              inputs: [{ name: 'x', shape: [R, D] }],
              outputs: [{ name: 'y', shape: [R, D] }],
              initializers: [{ name: 'w', shape: [D], data: wv }],
            },
            feeds: { x: f32(xv, [R, D]) },
            output: 'y',
            check: (y) => maxAbs(y, ref(), TOL, 'ORT rmsnorm'),
          },
        };
      },
    },
    {
      name: `rope ${prefillT}×${tc.num_attention_heads}×${tc.head_dim}`,
      kernel: 'rope',
      flops: 6 * prefillT * tc.num_attention_heads * tc.head_dim,
      bytes: 8 * prefillT * tc.num_attention_heads * tc.head_dim,
      async setup(_gpu, g, rng) {
        const [T, H, d] = [prefillT, tc.num_attention_heads, tc.head_dim];
        const xv = rng.array(T * H * d);
        const inv = ropeInvFreq(tc.rope_theta, d);
        const freq = g.input('inv_freq', [d / 2], 'f32');
        const x = g.input('x', [T, H * d], 'f32');
        const want = lazy(() => rope64(xv, inv, T, H, d, 0));
        const check = (y: ArrayLike<number>, who: string) => {
          const { y: r, tol } = want();
          let m = 0;
          // Per-element bound from the f32 angle (see test/ops/rope.test.ts).
          for (let i = 0; i < r.length; i++) {
            const e = Math.abs(y[i] - r[i]);
            if (!(e <= tol[i] + 1e-6)) throw new Error(`${who}rope: index ${i}: got ${y[i]}, expected ${r[i]}`);
            m = Math.max(m, e);
          }
          return m;
        };
        // onnxruntime takes cos/sin tables rather than inv_freq: computed here in float64 from the same
        // f32 inv_freq, for positions 0 .. T-1.
        const cos = new Float32Array(T * (d / 2));
        const sin = new Float32Array(T * (d / 2));
        for (let t = 0; t < T; t++)
          for (let i = 0; i < d / 2; i++) {
            cos[t * (d / 2) + i] = Math.cos(t * inv[i]);
            sin[t * (d / 2) + i] = Math.sin(t * inv[i]);
          }
        return {
          outputs: [rope(g, x, freq, H)],
          inputs: [[x, xv], [freq, inv]],
          check: ([y]) => check(y, ''),
          peer: {
            graph: 'com.microsoft RotaryEmbedding(x [1,T,H·d], position_ids, cos/sin tables [T, d/2])',
            model: {
              nodes: [{ op: 'RotaryEmbedding', domain: 'com.microsoft', inputs: ['x', 'pos', 'cos', 'sin'], outputs: ['y'], attrs: { interleaved: 0, num_heads: H } }],
              inputs: [
                { name: 'x', shape: [1, T, H * d] },
                { name: 'pos', shape: [1, T], type: DT.INT64 },
              ],
              outputs: [{ name: 'y', shape: [1, T, H * d] }],
              initializers: [
                { name: 'cos', shape: [T, d / 2], data: cos },
                { name: 'sin', shape: [T, d / 2], data: sin },
              ],
              opsets: MS,
            },
            feeds: { x: f32(xv, [1, T, H * d]), pos: { type: 'int64', data: BigInt64Array.from({ length: T }, (_, t) => BigInt(t)), dims: [1, T] } },
            output: 'y',
            check: (y) => check(y, 'ORT '),
          },
        };
      },
    },
    {
      // The decode step's RoPE + KV append (src/ops/rope.ts ropeQKV) over a fused q|k|v projection, at pos.
      name: `rope_qkv + KV append ${prefillT}×(${tc.num_attention_heads}+2·${tc.num_key_value_heads})×${tc.head_dim}`,
      kernel: 'rope',
      flops: 6 * prefillT * (tc.num_attention_heads + tc.num_key_value_heads) * tc.head_dim,
      bytes: 8 * prefillT * (tc.num_attention_heads + 2 * tc.num_key_value_heads) * tc.head_dim,
      async setup(gpu, g, rng) {
        const [T, H, KV, d] = [prefillT, tc.num_attention_heads, tc.num_key_value_heads, tc.head_dim];
        const [R, W] = [(H + 2 * KV) * d, KV * d];
        const xv = rng.array(T * R);
        const inv = ropeInvFreq(tc.rope_theta, d);
        const freq = g.input('inv_freq', [d / 2], 'f32');
        const x = g.input('qkv', [T, R], 'f32');
        // Zeroed caches with room for the rows at pos .. pos + T (freed with the weights after the row).
        const pos = 7;
        const S = pos + T;
        const cache = { k: g.state('k_cache', [S, W], 'f32', gpu.pool.create(S * W * 4)), v: g.state('v_cache', [S, W], 'f32', gpu.pool.create(S * W * 4)) };
        const out = ropeQKV(g, x, freq, H, KV, cache);
        const part = (c0: number, w: number) => Float32Array.from({ length: T * w }, (_, i) => xv[Math.floor(i / w) * R + c0 + (i % w)]);
        const want = lazy(() => ({ q: rope64(part(0, H * d), inv, T, H, d, pos), k: rope64(part(H * d, W), inv, T, KV, d, pos), v: part(H * d + W, W) }));
        return {
          outputs: [out.q, out.k, out.v],
          inputs: [[x, xv], [freq, inv]],
          pos,
          check: ([q, k, v]) => {
            const w = want();
            let m = 0;
            // Per-element bound from the f32 angle (see test/ops/rope.test.ts); the values are copied exactly.
            const within = (got: ArrayLike<number>, at: number, r: ArrayLike<number>, tol: ArrayLike<number> | null, what: string) => {
              for (let i = 0; i < r.length; i++) {
                const e = Math.abs(got[at + i] - r[i]);
                if (!(e <= (tol ? tol[i] + 1e-6 : 0))) throw new Error(`rope_qkv ${what}: index ${i}: got ${got[at + i]}, expected ${r[i]}`);
                m = Math.max(m, e);
              }
            };
            within(q, 0, w.q.y, w.q.tol, 'q');
            within(k, pos * W, w.k.y, w.k.tol, 'key cache');
            within(v, pos * W, w.v, null, 'value cache');
            return m;
          },
        };
      },
    },
    {
      name: `silu(gate)·up ${prefillT}×${tc.intermediate_size}`,
      kernel: 'elementwise',
      flops: 6 * prefillT * tc.intermediate_size,
      bytes: 12 * prefillT * tc.intermediate_size,
      async setup(_gpu, g, rng) {
        const [R, D] = [prefillT, tc.intermediate_size];
        const [av, bv] = [rng.array(R * D, 3), rng.array(R * D)];
        const a = g.input('gate', [R, D], 'f32');
        const b = g.input('up', [R, D], 'f32');
        const ref = lazy(() => Float64Array.from(av, (v, i) => act64(v, ACT.silu) * bv[i]));
        return {
          outputs: [siluMul(g, a, b)],
          inputs: [[a, av], [b, bv]],
          check: ([y]) => maxAbs(y, ref(), TOL, 'silu_mul'),
          peer: {
            graph: 'com.microsoft QuickGelu(alpha=1) (= SiLU) → Mul',
            model: {
              nodes: [
                { op: 'QuickGelu', domain: 'com.microsoft', inputs: ['a'], outputs: ['s'], attrs: { alpha: { float: 1 } } },
                { op: 'Mul', inputs: ['s', 'b'], outputs: ['y'] },
              ],
              inputs: [
                { name: 'a', shape: [R, D] },
                { name: 'b', shape: [R, D] },
              ],
              outputs: [{ name: 'y', shape: [R, D] }],
              opsets: MS,
            },
            feeds: { a: f32(av, [R, D]), b: f32(bv, [R, D]) },
            output: 'y',
            check: (y) => maxAbs(y, ref(), TOL, 'ORT silu_mul'),
          },
        };
      },
    },
    {
      name: `add ${prefillT}×${tc.hidden_size}`,
      kernel: 'elementwise',
      flops: prefillT * tc.hidden_size,
      bytes: 12 * prefillT * tc.hidden_size,
      async setup(_gpu, g, rng) {
        const [R, D] = [prefillT, tc.hidden_size];
        const [av, bv] = [rng.array(R * D), rng.array(R * D)];
        const a = g.input('a', [R, D], 'f32');
        const b = g.input('b', [R, D], 'f32');
        const ref = lazy(() => Float64Array.from(av, (v, i) => v + bv[i]));
        return {
          outputs: [add(g, a, b)],
          inputs: [[a, av], [b, bv]],
          check: ([y]) => maxAbs(y, ref(), TOL, 'add'),
          peer: {
            graph: 'Add',
            model: {
              nodes: [{ op: 'Add', inputs: ['a', 'b'], outputs: ['y'] }],
              inputs: [
                { name: 'a', shape: [R, D] },
                { name: 'b', shape: [R, D] },
              ],
              outputs: [{ name: 'y', shape: [R, D] }],
            },
            feeds: { a: f32(av, [R, D]), b: f32(bv, [R, D]) },
            output: 'y',
            check: (y) => maxAbs(y, ref(), TOL, 'ORT add'),
          },
        };
      },
    },
    ...(['auto', 'workgroup'] as const).map((variant): PeerCase => ({
      name: `softmax ${4 * kvLen}×${kvLen}${variant === 'workgroup' ? ' (workgroup reduction, reference variant)' : ''}`,
      kernel: 'softmax',
      flops: 5 * 4 * kvLen * kvLen,
      bytes: 8 * 4 * kvLen * kvLen,
      async setup(_gpu, g, rng) {
        const [R, D] = [4 * kvLen, kvLen];
        const xv = rng.array(R * D, 4);
        const x = g.input('x', [R, D], 'f32');
        const ref = lazy(() => softmax64(xv, R, D));
        const tol = { atol: 1e-6, rtol: 1e-4 };
        return {
          outputs: [softmax(g, x, variant)],
          inputs: [[x, xv]],
          check: ([y]) => maxAbs(y, ref(), tol, 'softmax'),
          peer: variant !== 'auto' ? undefined : {
            graph: 'Softmax(axis -1) [opset 13]',
            model: {
              nodes: [{ op: 'Softmax', inputs: ['x'], outputs: ['y'], attrs: { axis: -1 } }],
              inputs: [{ name: 'x', shape: [R, D] }],
              outputs: [{ name: 'y', shape: [R, D] }],
            },
            feeds: { x: f32(xv, [R, D]) },
            output: 'y',
            check: (y) => maxAbs(y, ref(), tol, 'ORT softmax'),
          },
        };
      },
        })),
    {
      name: `embedding gather ${prefillT} ids from ${tc.vocab_size}×${tc.hidden_size}`,
      kernel: 'embedding',
      flops: 0,
      bytes: 8 * prefillT * tc.hidden_size + 4 * prefillT,
      async setup(gpu, g, rng) {
        const [V, D] = [tc.vocab_size, tc.hidden_size];
        const tv = rng.array(V * D, 0.25);
        const table = await weight(gpu, g, 'table', [V, D], tv);
        const ids = Uint32Array.from({ length: prefillT }, () => Math.floor(rng.next() * V));
        const x = g.input('ids', [prefillT], 'u32');
        const ref = lazy(() => embed64(ids, table.v, D));
        return {
          outputs: [embed(g, x, table.t)],
          inputs: [[x, ids]],
          check: ([y]) => maxAbs(y, ref(), { atol: 0 }, 'embedding'),
          peer: {
            graph: 'Gather(table [V,D] initializer, int64 ids)',
            model: {
              nodes: [{ op: 'Gather', inputs: ['table', 'ids'], outputs: ['y'], attrs: { axis: 0 } }],
              inputs: [{ name: 'ids', shape: [prefillT], type: DT.INT64 }],
              outputs: [{ name: 'y', shape: [prefillT, D] }],
              initializers: [{ name: 'table', shape: [V, D], data: tv }],
            },
            feeds: { ids: { type: 'int64', data: BigInt64Array.from(ids, BigInt), dims: [prefillT] } },
            output: 'y',
            check: (y) => maxAbs(y, ref(), { atol: 0 }, 'ORT embedding'),
          },
        };
      },
    },
    {
      // Ours only: LLaVA-NeXT's anyres packing as the gather's row map; half the rows are image features,
      // one in 7 of those the image-newline vector (no ONNX op does this in one).
      name: `embedding gather ${prefillT} ids with anyres image rows and newlines, ${tc.hidden_size} wide`,
      kernel: 'embedding',
      flops: 0,
      bytes: 8 * prefillT * tc.hidden_size + 8 * prefillT,
      async setup(gpu, g, rng) {
        const [V, D, F] = [tc.vocab_size, tc.hidden_size, Math.ceil(prefillT / 2)];
        const table = await weight(gpu, g, 'table', [V, D], rng.array(V * D, 0.25));
        const [fv, nv] = [rng.array(F * D), rng.array(D)];
        const ids = Uint32Array.from({ length: prefillT }, () => Math.floor(rng.next() * V));
        const rowv = Uint32Array.from({ length: prefillT }, (_, t) => (t % 2 ? NOT_IMAGE : t % 7 === 0 ? NEWLINE_ROW : t / 2));
        const [x, rows] = [g.input('ids', [prefillT], 'u32'), g.input('rows', [prefillT], 'u32')];
        const [features, newline] = [g.input('features', [F, D], 'f32'), g.input('newline', [D], 'f32')];
        const ref = lazy(() => embed64(ids, table.v, D, rowv, fv, nv));
        return {
          outputs: [embed(g, x, table.t, { features, rows, newline })],
          inputs: [[x, ids], [rows, rowv], [features, fv], [newline, nv]],
          check: ([y]) => maxAbs(y, ref(), { atol: 0 }, 'embedding with image rows'),
        };
      },
    },
    linearCase('decode gate_proj', 1, tc.hidden_size, tc.intermediate_size, 'F32'),
    linearCase('decode gate_proj', 1, tc.hidden_size, tc.intermediate_size, 'F16'),
    linearCase('decode gate_proj (gemv, reference variant)', 1, tc.hidden_size, tc.intermediate_size, 'F32', 'none', 'gemv'),
    linearCase('decode lm_head', 1, tc.hidden_size, tc.vocab_size, 'F32'),
    linearCase('decode lm_head', 1, tc.hidden_size, tc.vocab_size, 'F16'),
    linearCase('decode lm_head (tiled, reference variant)', 1, tc.hidden_size, tc.vocab_size, 'F32', 'none', 'tiled'),
    ...compactRows('decode gate_proj', tc.hidden_size, tc.intermediate_size),
    ...compactRows('decode lm_head', tc.hidden_size, tc.vocab_size),
    // LLaVA-1.5-7B's decoder (hidden 4096, intermediate 11008): the shapes a 7B decode step reads.
    ...(o.quick ? [] : [linearCase('decode LLaVA-7B gate_proj', 1, 4096, 11008, 'F32'), ...compactRows('decode LLaVA-7B gate_proj', 4096, 11008)]),
    compactLinearCase('prefill gate_proj', prefillT, tc.hidden_size, tc.intermediate_size, 'q4'),
    compactLinearCase('prefill gate_proj', prefillT, tc.hidden_size, tc.intermediate_size, 'BF16'),
    ...(['F32', 'F16'] as SourceDType[]).map(
      (dtype): PeerCase => ({
        // Ours only: the fused kernel has no single ONNX op to compare with (the peer's rows cover the matmuls).
        name: `decode SwiGLU gate·up fused gemv 1×${tc.hidden_size}·${tc.intermediate_size}×${tc.hidden_size}ᵀ ×2 ${dtype}`,
        kernel: 'gemv',
        flops: 4 * tc.hidden_size * tc.intermediate_size,
        bytes: 4 * tc.hidden_size + 2 * (dtype === 'F16' ? 2 : 4) * tc.intermediate_size * tc.hidden_size + 4 * tc.intermediate_size,
        async setup(gpu, g, rng) {
          const [K, N] = [tc.hidden_size, tc.intermediate_size];
          const xv = rng.array(K);
          const gate = await weight(gpu, g, 'gate', [N, K], rng.array(N * K, 1 / Math.sqrt(K)), dtype);
          const up = await weight(gpu, g, 'up', [N, K], rng.array(N * K, 1 / Math.sqrt(K)), dtype);
          const x = g.input('x', [1, K], 'f32');
          const ref = lazy(() => {
            const gv = linear64(xv, gate.v, 1, N, K, undefined, ACT.silu);
            const uv = linear64(xv, up.v, 1, N, K);
            return gv.map((v, i) => v * uv[i]);
          });
          return { outputs: [gluGemv(g, x, gate.t, up.t)], inputs: [[x, xv]], check: ([y]) => maxAbs(y, ref(), TOL, 'gemv_glu') };
        },
      }),
    ),
    {
      // Ours only (LLaVA's CLIP tower): onnxruntime would need a Concat + Add graph of no interest.
      name: `CLIP class + position embeddings ${patches}+1 × ${vc.hidden_size}`,
      kernel: 'embedding',
      flops: (patches + 1) * vc.hidden_size,
      bytes: 4 * (patches * vc.hidden_size + vc.hidden_size + 2 * (patches + 1) * vc.hidden_size),
      async setup(gpu, g, rng) {
        const D = vc.hidden_size;
        const pv = rng.array(patches * D);
        const cls = await weight(gpu, g, 'cls', [D], rng.array(D));
        const pos = await weight(gpu, g, 'pos', [patches + 1, D], rng.array((patches + 1) * D));
        const x = g.input('patches', [patches, D], 'f32');
        const ref = lazy(() => Float64Array.from({ length: (patches + 1) * D }, (_, i) => (i < D ? cls.v[i] : pv[i - D]) + pos.v[i]));
        return { outputs: [classPosition(g, x, cls.t, pos.t)], inputs: [[x, pv]], check: ([y]) => maxAbs(y, ref(), { atol: 1e-6 }, 'class_position') };
      },
    },
    {
      // Decode on a GPU: o_proj's gemv merging split-KV partials as it reads them (matmul.wgsl a_mode 3),
      // the partials from attention_partial in the same graph; against o_proj of the float64 attention.
      name: `decode split-KV attention kv=${kvLen} + o_proj merging the partials ${tc.num_attention_heads}×${tc.head_dim} → ${tc.hidden_size}`,
      kernel: 'gemv',
      flops: 4 * kvLen * tc.num_attention_heads * tc.head_dim + 2 * tc.num_attention_heads * tc.head_dim * tc.hidden_size,
      bytes: 4 * 2 * kvLen * tc.num_key_value_heads * tc.head_dim + 4 * tc.num_attention_heads * tc.head_dim * tc.hidden_size,
      async setup(gpu, g, rng) {
        const [H, KV, d, D] = [tc.num_attention_heads, tc.num_key_value_heads, tc.head_dim, tc.hidden_size];
        const [qv, kv, vv] = [rng.array(H * d), rng.array(kvLen * KV * d), rng.array(kvLen * KV * d)];
        const wo = await weight(gpu, g, 'o_proj', [D, H * d], rng.array(D * H * d, 1 / Math.sqrt(H * d)));
        const q = g.input('q', [1, H * d], 'f32');
        const k = g.input('k', [kvLen, KV * d], 'f32');
        const v = g.input('v', [kvLen, KV * d], 'f32');
        const o = attentionOperand(g, q, k, v, { heads: H, kvHeads: KV, causal: true, variant: 'split' });
        const ref = lazy(() => linear64(Float32Array.from(attention64(qv, kv, vv, 1, H, KV, d, () => kvLen - 1)), wo.v, 1, D, H * d));
        return {
          outputs: [matmulNode(g, o.x, wo.t, 1, o.a)],
          inputs: [[q, qv], [k, kv], [v, vv]],
          pos: kvLen - 1,
          check: ([y]) => maxAbs(y, ref(), TOL, 'o_proj over split-KV partials'),
        };
      },
    },
    // 'auto': split-KV (flash decoding) on GPUs, attention_lanes on SIMD-on-CPU devices.
    ...(['auto', 'single'] as const).map((variant): PeerCase => ({
      name: `decode attention kv=${kvLen} ${tc.num_attention_heads}/${tc.num_key_value_heads} heads ×${tc.head_dim}${variant === 'single' ? ' (single pass, reference variant)' : ''}`,
      kernel: 'attention',
      flops: 4 * kvLen * tc.num_attention_heads * tc.head_dim,
      bytes: 4 * 2 * kvLen * tc.num_key_value_heads * tc.head_dim,
      async setup(_gpu, g, rng) {
        const [H, KV, d] = [tc.num_attention_heads, tc.num_key_value_heads, tc.head_dim];
        const [qv, kv, vv] = [rng.array(H * d), rng.array(kvLen * KV * d), rng.array(kvLen * KV * d)];
        const q = g.input('q', [1, H * d], 'f32');
        const k = g.input('k', [kvLen, KV * d], 'f32');
        const v = g.input('v', [kvLen, KV * d], 'f32');
        const ref = lazy(() => attention64(qv, kv, vv, 1, H, KV, d, () => kvLen - 1));
        return {
          outputs: [attention(g, q, k, v, { heads: H, kvHeads: KV, causal: true, variant })],
          inputs: [[q, qv], [k, kv], [v, vv]],
          pos: kvLen - 1,
          check: ([y]) => maxAbs(y, ref(), TOL, 'decode attention'),
          peer: variant !== 'auto' ? undefined : gqa(H, KV, d, 1, kvLen - 1, qv, kv, vv, (y) => maxAbs(y, ref(), TOL, 'ORT decode attention')),
        };
      },
    })),
    {
      name: `argmax over ${tc.vocab_size}`,
      kernel: 'argmax',
      flops: tc.vocab_size,
      bytes: 4 * tc.vocab_size,
      async setup(_gpu, g, rng) {
        const V = tc.vocab_size;
        const xv = rng.array(V);
        const x = g.input('logits', [1, V], 'f32');
        const check = (y: ArrayLike<number>, who: string) => {
          const want = argmax64(xv, 1, V);
          if (y[0] !== want) throw new Error(`${who}argmax: got ${y[0]}, expected ${want}`);
          return 0;
        };
        return {
          outputs: [argmax(g, x)],
          inputs: [[x, xv]],
          check: ([y]) => check(y, ''),
          peer: {
            graph: 'ArgMax(axis -1, keepdims 0) → int64',
            model: {
              nodes: [{ op: 'ArgMax', inputs: ['x'], outputs: ['y'], attrs: { axis: -1, keepdims: 0 } }],
              inputs: [{ name: 'x', shape: [1, V] }],
              outputs: [{ name: 'y', shape: [1], type: DT.INT64 }],
            },
            feeds: { x: f32(xv, [1, V]) },
            output: 'y',
            check: (y) => check(y, 'ORT '),
          },
        };
      },
    },
  ];
}

/**
 * com.microsoft GroupQueryAttention over the rows of q ([T, H·d]) and k, v ([past + T, KV·d], our KV
 * cache layout). The first `past` key/value rows go in as past_key/past_value, which the op takes as
 * [1, KV, past, d] (so they are transposed here, once, on the host); the last T rows as the new keys.
 * Queries sit at positions past .. past + T − 1, causal. present_key/present_value are left as
 * intermediates, so they are not copied back.
 */
function gqa(
  H: number,
  KV: number,
  d: number,
  T: number,
  past: number,
  qv: Float32Array,
  kv: Float32Array,
  vv: Float32Array,
  check: (y: ArrayLike<number>) => number,
): PeerSide {
  const total = past + T;
  const bnsh = (a: Float32Array) => {
    const out = new Float32Array(KV * past * d);
    for (let s = 0; s < past; s++) for (let h = 0; h < KV; h++) for (let i = 0; i < d; i++) out[(h * past + s) * d + i] = a[(s * KV + h) * d + i];
    return out;
  };
  const newRows = (a: Float32Array) => a.slice(past * KV * d);
  const feeds: Record<string, HostTensor> = {
    q: f32(qv, [1, T, H * d]),
    k: f32(newRows(kv), [1, T, KV * d]),
    v: f32(newRows(vv), [1, T, KV * d]),
  };
  const inputs = [
    { name: 'q', shape: [1, T, H * d] },
    { name: 'k', shape: [1, T, KV * d] },
    { name: 'v', shape: [1, T, KV * d] },
  ];
  if (past) {
    feeds.past_k = f32(bnsh(kv), [1, KV, past, d]);
    feeds.past_v = f32(bnsh(vv), [1, KV, past, d]);
    inputs.push({ name: 'past_k', shape: [1, KV, past, d] }, { name: 'past_v', shape: [1, KV, past, d] });
  }
  return {
    graph: `com.microsoft GroupQueryAttention(num_heads ${H}, kv_num_heads ${KV}${past ? `, past_key/value [1,KV,${past},d]` : ''})`,
    model: {
      nodes: [
        {
          op: 'GroupQueryAttention',
          domain: 'com.microsoft',
          inputs: ['q', 'k', 'v', past ? 'past_k' : '', past ? 'past_v' : '', 'seqlens_k', 'total_len'],
          outputs: ['y', 'present_k', 'present_v'],
          attrs: { num_heads: H, kv_num_heads: KV },
        },
      ],
      inputs,
      outputs: [{ name: 'y', shape: [1, T, H * d] }],
      initializers: [
        { name: 'seqlens_k', shape: [1], type: DT.INT32, data: Int32Array.from([total - 1]) },
        { name: 'total_len', shape: [], type: DT.INT32, data: Int32Array.from([total]) },
      ],
      opsets: MS,
    },
    feeds,
    output: 'y',
    check,
  };
}
