// Softmax over the last dimension (shaders/softmax.wgsl), f32 statistics. A workgroup reduction per row
// on GPUs; softmax_rows on SIMD-on-CPU devices (src/gpu/tuning.ts). A bench reference, not used by the
// models: attention computes its softmax online (attention.wgsl). Kept for the softmax rows of
// bench/cases/elementwise.ts (the cost of a separate softmax pass) and the numerics tests.
import type { Graph, Kernel } from '../graph/graph.ts';
import { type Tensor, expectShape } from '../graph/tensor.ts';
import { uniforms, gridRows, useRowsEntry, type RowOpVariant } from './common.ts';

/** 'auto' takes rows on a SIMD-on-CPU device when D % 4 == 0, else the workgroup reduction. */
export type SoftmaxVariant = RowOpVariant;

/** Invocations per row of softmax_rows (they share the row's writes). */
// Every invocation takes the row statistics itself, so few lanes waste least; 4 measured best on
// llvmpipe (softmax 4096×1024: 70 ms with 16, 41 with 8, 35 with 4).
const ROWS_WG = 4;

const kernel: Kernel<{ rows: boolean }> = {
  name: 'softmax',
  encode(node, buf) {
    const [x] = node.inputs;
    const D = x.dim(-1);
    const rows = x.size / D;
    const byRows = node.attrs.rows;
    return [
      {
        pipeline: byRows ? { shader: 'softmax', entry: 'softmax_rows', constants: { NWG: ROWS_WG } } : { shader: 'softmax', entry: 'softmax' },
        bindings: [
          { binding: byRows ? 3 : 1, buffer: buf(x) },
          { binding: byRows ? 4 : 2, buffer: buf(node.output) },
        ],
        uniforms: uniforms(rows, D),
        workgroups: gridRows(rows),
      },
    ];
  },
};

export function softmax(g: Graph, x: Tensor, variant: SoftmaxVariant = 'auto'): Tensor {
  expectShape('softmax', 'input', x, x.shape.map(() => null), ['f32']);
  const D = x.dim(-1);
  const rows = useRowsEntry(g, 'softmax', D, variant);
  return g.add(kernel, [x], { shape: [...x.shape], dtype: 'f32' }, { rows });
}
