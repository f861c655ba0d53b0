// The matmul-based rows: linear layers over every weight format (f32, f16, BF16, q8, q4, AWQ q4) as
// matmul or gemv, the fused SwiGLU gemv, the vision patch embedding and the pixel-shuffle projector.
import { linear } from '../../src/ops/matmul.ts';
import { ACT } from '../../src/ops/elementwise.ts';
import { patchEmbed } from '../../src/ops/patch-embed.ts';
import { pixelShuffleProject } from '../../src/ops/projector.ts';
import { gluGemv } from '../../src/ops/gemv.ts';
import type { SourceDType } from '../../src/models/storage.ts';
import { quantWeight, weight } from '../../test/data.ts';
import { f16Value, type QuantSpec } from '../../src/io/quant.ts';
import { linear64 } from '../../test/ops/reference.ts';
import { DT, type OnnxModel, type OnnxInitializer } from '../peers/onnx.ts';
import { TOL, f16Tol, lazy, f32, maxAbs, transpose, f16Bits, type PeerCase, type PeerSide, type Shapes } from './common.ts';

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

/** A linear layer x·Wᵀ (+ GELU with `act`) over an F32 or F16 weight, as matmul or gemv by M, or a forced `variant`. */
export function linearCase(
  s: Shapes,
  name: string,
  M: number,
  K: number,
  N: number,
  dtype: SourceDType,
  act: 'none' | 'gelu_tanh' = 'none',
  variant?: 'tiled' | 'gemv' | 'rows',
): PeerCase {
  const { o } = s;
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
export function compactLinearCase(name: string, M: number, K: number, N: number, fmt: 'BF16' | 'q8' | 'q4' | 'AWQ q4', variant?: 'tiled' | 'gemv' | 'rows'): PeerCase {
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
export const compactRows = (name: string, K: number, N: number) =>
  (['BF16', 'q8', 'q4', 'AWQ q4'] as const).map((fmt) => compactLinearCase(name, 1, K, N, fmt));

/** The vision tower's patch embedding: the P×P stride-P convolution as an im2col matmul, + bias + position embeddings. */
export function patchEmbeddingCase(s: Shapes): PeerCase {
  const { vc, patches } = s;
  return {
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
  };
}

/** The connector: pixel shuffle by scale_factor folded into the projection's matmul. */
export function projectorCase(s: Shapes, variant: 'auto' | 'tiled'): PeerCase {
  const { cfg, vc, tc, patches, o } = s;
  return {
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
  };
}

/** The decode MLP's gate and up projections with silu(gate)·up in one gemv. */
export function swigluGemvCase(s: Shapes, dtype: SourceDType): PeerCase {
  const { tc } = s;
  return {
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
  };
}
