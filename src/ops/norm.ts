// RMSNorm and LayerNorm over the last dimension (shaders/norm.wgsl), f32 statistics. A workgroup per row
// with a shared-memory reduction on GPUs; on SIMD-on-CPU devices the *_rows entries (src/gpu/tuning.ts).
import type { Graph, Kernel } from '../graph/graph.ts';
import { type Tensor, expectShape } from '../graph/tensor.ts';
import { uniforms, f32, gridRows, whole, wgslType, useRowsEntry, type RowOpVariant } from './common.ts';

/** 'auto' takes rows on a SIMD-on-CPU device when D % 4 == 0, else the workgroup reduction. */
export type NormVariant = RowOpVariant;

interface Attrs {
  kind: 'rmsnorm' | 'layernorm';
  eps: number;
  rows: boolean;
}

/** Invocations per row in the *_rows entries (they share the row's writes). */
// Every invocation takes the row statistics itself, so few lanes waste least; 4 measured best on
// llvmpipe (layernorm 1024×768: 11.2 ms with 16, 6.0 with 8, 4.7 with 4, 5.2 with 1).
const ROWS_WG = 4;

const kernel: Kernel<Attrs> = {
  name: 'norm',
  encode(node, buf) {
    const [x, w, b] = node.inputs;
    const D = x.dim(-1);
    const rows = x.size / D;
    const { kind, eps } = node.attrs;
    if (node.attrs.rows) {
      return [
        {
          pipeline: { shader: 'norm', entry: `${kind}_rows`, aliases: { WT: wgslType(w) }, constants: { NWG: ROWS_WG } },
          bindings: [
            { binding: 5, buffer: buf(x) },
            { binding: 6, buffer: whole(kind, w, buf) },
            ...(b ? [{ binding: 7, buffer: whole(kind, b, buf) }] : []),
            { binding: 8, buffer: buf(node.output) },
          ],
          uniforms: uniforms(rows, D, f32(eps)),
          workgroups: gridRows(rows),
        },
      ];
    }
    return [
      {
        pipeline: { shader: 'norm', entry: kind, aliases: { WT: wgslType(w) } },
        bindings: [
          { binding: 1, buffer: buf(x) },
          { binding: 2, buffer: whole(kind, w, buf) },
          ...(b ? [{ binding: 3, buffer: whole(kind, b, buf) }] : []),
          { binding: 4, buffer: buf(node.output) },
        ],
        uniforms: uniforms(rows, D, f32(eps)),
        workgroups: gridRows(rows),
      },
    ];
  },
};

export function rmsNorm(g: Graph, x: Tensor, weight: Tensor, eps: number, variant: NormVariant = 'auto'): Tensor {
  const D = x.dim(-1);
  expectShape('rmsnorm', 'weight', weight, [D], ['f32', 'f16']);
  const rows = useRowsEntry(g, 'rmsnorm', D, variant);
  return g.add(kernel, [x, weight], { shape: [...x.shape], dtype: 'f32' }, { kind: 'rmsnorm', eps, rows });
}

export function layerNorm(g: Graph, x: Tensor, weight: Tensor, bias: Tensor, eps: number, variant: NormVariant = 'auto'): Tensor {
  const D = x.dim(-1);
  expectShape('layernorm', 'weight', weight, [D], ['f32', 'f16']);
  expectShape('layernorm', 'bias', bias, [D], [weight.dtype]);
  const rows = useRowsEntry(g, 'layernorm', D, variant);
  return g.add(kernel, [x, weight, bias], { shape: [...x.shape], dtype: 'f32' }, { kind: 'layernorm', eps, rows });
}
