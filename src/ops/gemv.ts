// SwiGLU, down(silu(x·Wgᵀ) · (x·Wuᵀ))'s inner part, with the kernel choice made here rather than in model
// files: in decode (M ≤ GEMV_MAX_M, no biases) one pass over both weights (shaders/gemv.wgsl gemv_glu; on
// SIMD-on-CPU devices shaders/matmul-rows.wgsl gemv_glu_rows with RM = M), else two linear layers and
// the elementwise product. An RMSNorm of x is folded into the kernels where they read whole rows, and
// computed once for both otherwise.
import type { Dispatch, Graph, Kernel } from '../graph/graph.ts';
import { type Tensor, WEIGHT_DTYPES, expectShape } from '../graph/tensor.ts';
import {
  GEMV_MAX_M, GEMV_ROWS, foldsNorm, linear, rowsDispatches, rowsFit, rowsTiles, normBindings, params, sameChunks,
  type MatmulAttrs, type NormFold,
} from './matmul.ts';
import { sameFormat, weightFormat } from './common.ts';
import { rmsNorm } from './norm.ts';
import { siluMul } from './elementwise.ts';

/** On a SIMD-on-CPU device: gemv_glu_rows, matmul_rows' loop over both weights. */
const gluRowsKernel: Kernel<MatmulAttrs> = {
  name: 'gemv_glu_rows',
  encode(node, buf, ctx) {
    const [, gate, up] = node.inputs;
    return rowsDispatches(node, 'gemv_glu_rows', [gate, up], buf, ctx);
  },
};

const gluKernel: Kernel<MatmulAttrs> = {
  name: 'gemv_glu',
  encode(node, buf, ctx) {
    const [x, gate, up] = node.inputs;
    const [gc, uc] = sameChunks('gemv_glu', [gate, up], buf);
    const f = weightFormat(gate);
    return gc.map(
      (c, i): Dispatch => ({
        pipeline: {
          shader: 'gemv',
          entry: 'gemv_glu',
          weight: f.weight,
          constants: { ...f.constants, GROWS: GEMV_ROWS },
          enables: ctx.subgroupReduce ? ['subgroups'] : undefined,
        },
        bindings: [
          { binding: 1, buffer: buf(x) },
          { binding: 2, buffer: c.buffer },
          { binding: 5, buffer: buf(node.output) },
          { binding: 7, buffer: uc[i].buffer },
          { binding: 8, buffer: buf(x) },
          ...normBindings(node, buf, ctx, [11, 12]),
        ],
        uniforms: params(node.attrs, c.row0, c.rows),
        workgroups: [Math.ceil(c.rows / GEMV_ROWS), 1, node.attrs.M],
      }),
    );
  },
};

/**
 * silu(x·gateᵀ) · (x·upᵀ) for x [M ≤ GEMV_MAX_M, K], gate and up [N, K] of one format, in one kernel, with
 * an RMSNorm of x folded in when `norm` is given. Returns [M, N].
 */
export function gluGemv(g: Graph, x: Tensor, gate: Tensor, up: Tensor, norm?: NormFold): Tensor {
  const [N, K] = gate.shape;
  expectShape('gemv_glu', 'input', x, [null, K], ['f32']);
  expectShape('gemv_glu', 'gate weight', gate, [N, K], WEIGHT_DTYPES);
  expectShape('gemv_glu', 'up weight', up, [N, K], [gate.dtype]);
  if (!sameFormat(gate, up)) throw new Error(`gemv_glu: ${gate} and ${up} are quantized differently`);
  if (norm) expectShape('gemv_glu', 'folded rmsnorm weight', norm.weight, [K], ['f32']);
  const M = x.dim(0);
  if (M > GEMV_MAX_M) throw new Error(`gemv_glu: ${M} rows; the fused decode path takes at most ${GEMV_MAX_M}`);
  const rows = g.tuning.target === 'cpu' && rowsFit({ mode: 'plain' }, K, gate);
  const attrs: MatmulAttrs = {
    M, N, K, act: 0, a: { mode: 'plain' }, variant: rows ? 'rows' : 'gemv', rows: rows ? rowsTiles(g.tuning.rows, M) : undefined,
    hasBias: false, hasRes: false, norm: norm ? { eps: norm.eps } : undefined, resRows: 0, kChunk: K, splits: 1,
  };
  const inputs = [x, gate, up, ...(norm ? [norm.weight] : [])];
  return g.add(rows ? gluRowsKernel : gluKernel, inputs, { shape: [M, N], dtype: 'f32' }, attrs);
}

export interface SwiGluOptions {
  gateBias?: Tensor;
  upBias?: Tensor;
  /** An RMSNorm to apply to x first. */
  norm?: NormFold;
}

/** silu(x·gateᵀ + bg) · (x·upᵀ + bu), choosing the fused decode kernel where it applies (see the header). */
export function swiGlu(g: Graph, x: Tensor, gate: Tensor, up: Tensor, opts: SwiGluOptions = {}): Tensor {
  const M = x.dim(0);
  if (M <= GEMV_MAX_M && !opts.gateBias && !opts.upBias && sameFormat(gate, up)) return gluGemv(g, x, gate, up, opts.norm);
  let norm = opts.norm;
  if (norm && !foldsNorm(g, M, gate)) {
    x = rmsNorm(g, x, norm.weight, norm.eps);
    norm = undefined;
  }
  return siluMul(g, linear(g, x, gate, { bias: opts.gateBias, norm }), linear(g, x, up, { bias: opts.upBias, norm }));
}
