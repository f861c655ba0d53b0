// RMSNorm and LayerNorm over the last dimension (shaders/norm.wgsl), f32 statistics.
import type { Graph, Kernel } from '../graph/graph.ts';
import { type Tensor, expectShape } from '../graph/tensor.ts';
import { uniforms, f32, gridRows, whole, wgslType } from './common.ts';

interface Attrs {
  kind: 'rmsnorm' | 'layernorm';
  eps: number;
}

const kernel: Kernel<Attrs> = {
  name: 'norm',
  encode(node, buf) {
    const [x, w, b] = node.inputs;
    const D = x.dim(-1);
    const rows = x.size / D;
    const { kind, eps } = node.attrs;
    return [
      {
        pipeline: { shader: 'norm', entry: kind, aliases: { WT: wgslType(w) } },
        bindings: [
          { binding: 1, buffer: buf(x) },
          { binding: 2, buffer: whole(kind, w, buf) },
          ...(b ? [{ binding: 3, buffer: whole(kind, b, buf) }] : []),
          { binding: 4, buffer: buf(node.output) },
        ],
        uniforms: () => uniforms(rows, D, f32(eps)),
        workgroups: gridRows(rows),
      },
    ];
  },
};

export function rmsNorm(g: Graph, x: Tensor, weight: Tensor, eps: number): Tensor {
  const D = x.dim(-1);
  expectShape('rmsnorm', 'weight', weight, [D], ['f32', 'f16']);
  return g.add(kernel, [x, weight], { shape: [...x.shape], dtype: 'f32' }, { kind: 'rmsnorm', eps });
}

export function layerNorm(g: Graph, x: Tensor, weight: Tensor, bias: Tensor, eps: number): Tensor {
  const D = x.dim(-1);
  expectShape('layernorm', 'weight', weight, [D], ['f32', 'f16']);
  expectShape('layernorm', 'bias', bias, [D], [weight.dtype]);
  return g.add(kernel, [x, weight, bias], { shape: [...x.shape], dtype: 'f32' }, { kind: 'layernorm', eps });
}
