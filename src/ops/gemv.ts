// Matrix-vector products for decode (M = 1 .. GEMV_MAX_M), entries of shaders/matmul.wgsl:
//   (on SIMD-on-CPU devices both are matmul_rows entries, with RM = M; see matmul.ts)
//   gemv:     the linear layer (bound through matmul.ts's node and epilogue; this forces that variant);
//   gemv_glu: SwiGLU's silu(x·Wgᵀ) · (x·Wuᵀ) in one pass over both weights (Llama's MLP in decode).
import type { Dispatch, Graph, Kernel } from '../graph/graph.ts';
import { type Tensor, expectShape } from '../graph/tensor.ts';
import { linear, GEMV_MAX_M, rowsDispatches, rowsFit, rowsTiles, matmulAliases, normBinding, normWeightOf, params, type LinearOptions, type MatmulAttrs, type NormFold } from './matmul.ts';
import { chunksOf } from './common.ts';

export function gemv(g: Graph, x: Tensor, w: Tensor, opts: Omit<LinearOptions, 'variant'> = {}): Tensor {
  return linear(g, x, w, { ...opts, variant: 'gemv' });
}

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
    const gc = chunksOf(gate, buf);
    const uc = chunksOf(up, buf);
    if (gc.length !== uc.length || gc.some((c, i) => c.row0 !== uc[i].row0 || c.rows !== uc[i].rows)) {
      throw new Error(`gemv_glu: ${gate} and ${up} are split differently`);
    }
    return gc.map(
      (c, i): Dispatch => ({
        pipeline: {
          shader: 'matmul',
          entry: 'gemv_glu',
          aliases: matmulAliases(gate, undefined, normWeightOf(node)),
          enables: ctx.subgroupReduce ? ['subgroups'] : undefined,
        },
        bindings: [
          { binding: 1, buffer: buf(x) },
          { binding: 2, buffer: c.buffer },
          { binding: 5, buffer: buf(node.output) },
          { binding: 7, buffer: uc[i].buffer },
          normBinding(node, buf, ctx, 11),
        ],
        uniforms: params(node.attrs, c.row0, c.rows),
        workgroups: [Math.ceil(c.rows / 8), 1, node.attrs.M],
      }),
    );
  },
};

/**
 * silu(x·gateᵀ) · (x·upᵀ) for x [M ≤ GEMV_MAX_M, K], gate and up [N, K] of one dtype, with an RMSNorm
 * of x folded in when `norm` is given. Returns [M, N].
 */
export function gluGemv(g: Graph, x: Tensor, gate: Tensor, up: Tensor, norm?: NormFold): Tensor {
  const [N, K] = gate.shape;
  expectShape('gemv_glu', 'input', x, [null, K], ['f32']);
  expectShape('gemv_glu', 'up weight', up, [N, K], [gate.dtype]);
  if (norm) expectShape('gemv_glu', 'folded rmsnorm weight', norm.weight, [K], ['f32', 'f16']);
  const M = x.dim(0);
  if (M > GEMV_MAX_M) throw new Error(`gemv_glu: ${M} rows; the fused decode path takes at most ${GEMV_MAX_M}`);
  const rows = g.tuning.target === 'cpu' && rowsFit({ mode: 'plain' }, K);
  const attrs: MatmulAttrs = {
    M, N, K, act: 0, a: { mode: 'plain' }, variant: rows ? 'rows' : 'gemv', rows: rows ? rowsTiles(g.tuning.rows, M) : undefined,
    hasBias: false, hasRes: false, norm: norm ? { eps: norm.eps } : undefined, resRows: 0, kChunk: K, splits: 1,
  };
  const inputs = [x, gate, up, ...(norm ? [norm.weight] : [])];
  return g.add(rows ? gluRowsKernel : gluKernel, inputs, { shape: [M, N], dtype: 'f32' }, attrs);
}
