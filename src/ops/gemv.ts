// Matrix-vector products for decode (M = 1 .. GEMV_MAX_M), entries of shaders/matmul.wgsl:
//   (on SIMD-on-CPU devices both are matmul_rows entries, with RM = M; see matmul.ts)
//   gemv:     the linear layer (bound through matmul.ts's node and epilogue; this forces that variant);
//   gemv_glu: SwiGLU's silu(x·Wgᵀ) · (x·Wuᵀ) in one pass over both weights (Llama's MLP in decode).
import type { Dispatch, Graph, Kernel } from '../graph/graph.ts';
import { type Tensor, expectShape } from '../graph/tensor.ts';
import { linear, GEMV_MAX_M, rowsDispatches, rowsFit, rowsTiles, type LinearOptions, type MatmulAttrs } from './matmul.ts';
import { uniforms, chunksOf, wgslType } from './common.ts';

export function gemv(g: Graph, x: Tensor, w: Tensor, opts: Omit<LinearOptions, 'variant'> = {}): Tensor {
  return linear(g, x, w, { ...opts, variant: 'gemv' });
}

/** On a SIMD-on-CPU device: gemv_glu_rows, matmul_rows' loop over both weights. */
const gluRowsKernel: Kernel<MatmulAttrs> = {
  name: 'gemv_glu_rows',
  encode(node, buf) {
    const [x, gate, up] = node.inputs;
    return rowsDispatches(node.attrs, 'gemv_glu_rows', x, [gate, up], buf, buf(node.output));
  },
};

const gluKernel: Kernel<{ M: number; N: number; K: number }> = {
  name: 'gemv_glu',
  encode(node, buf) {
    const [x, gate, up] = node.inputs;
    const { M, N, K } = node.attrs;
    const gc = chunksOf(gate, buf);
    const uc = chunksOf(up, buf);
    if (gc.length !== uc.length || gc.some((c, i) => c.row0 !== uc[i].row0 || c.rows !== uc[i].rows)) {
      throw new Error(`gemv_glu: ${gate} and ${up} are split differently`);
    }
    return gc.map(
      (c, i): Dispatch => ({
        pipeline: { shader: 'matmul', entry: 'gemv_glu', aliases: { WT: wgslType(gate), BT: 'f32' } },
        bindings: [
          { binding: 1, buffer: buf(x) },
          { binding: 2, buffer: c.buffer },
          { binding: 5, buffer: buf(node.output) },
          { binding: 7, buffer: uc[i].buffer },
        ],
        // The Params words of matmul.wgsl: M, N (this chunk), K, n0, ldc; the rest unused here.
        uniforms: uniforms(M, c.rows, K, c.row0, N, ...new Array(15).fill(0)),
        workgroups: [Math.ceil(c.rows / 8), 1, M],
      }),
    );
  },
};

/** silu(x·gateᵀ) · (x·upᵀ) for x [M ≤ GEMV_MAX_M, K], gate and up [N, K] of one dtype. Returns [M, N]. */
export function gluGemv(g: Graph, x: Tensor, gate: Tensor, up: Tensor): Tensor {
  const [N, K] = gate.shape;
  expectShape('gemv_glu', 'input', x, [null, K], ['f32']);
  expectShape('gemv_glu', 'up weight', up, [N, K], [gate.dtype]);
  const M = x.dim(0);
  if (M > GEMV_MAX_M) throw new Error(`gemv_glu: ${M} rows; the fused decode path takes at most ${GEMV_MAX_M}`);
  if (g.tuning.target === 'cpu' && rowsFit({ mode: 'plain' }, K)) {
    const attrs: MatmulAttrs = {
      M, N, K, act: 0, a: { mode: 'plain' }, variant: 'rows', rows: rowsTiles(g.tuning.rows, M),
      hasBias: false, hasRes: false, resRows: 0, kChunk: K, splits: 1,
    };
    return g.add(gluRowsKernel, [x, gate, up], { shape: [M, N], dtype: 'f32' }, attrs);
  }
  return g.add(gluKernel, [x, gate, up], { shape: [M, N], dtype: 'f32' }, { M, N, K });
}
