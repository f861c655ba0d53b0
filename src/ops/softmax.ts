// Softmax over the last dimension (shaders/softmax.wgsl), f32 statistics.
import type { Graph, Kernel } from '../graph/graph.ts';
import { type Tensor, expectShape } from '../graph/tensor.ts';
import { uniforms, gridRows } from './common.ts';

const kernel: Kernel<null> = {
  name: 'softmax',
  encode(node, buf) {
    const [x] = node.inputs;
    const D = x.dim(-1);
    const rows = x.size / D;
    return [
      {
        pipeline: { shader: 'softmax', entry: 'softmax' },
        bindings: [
          { binding: 1, buffer: buf(x) },
          { binding: 2, buffer: buf(node.output) },
        ],
        uniforms: () => uniforms(rows, D),
        workgroups: gridRows(rows),
      },
    ];
  },
};

export function softmax(g: Graph, x: Tensor): Tensor {
  expectShape('softmax', 'input', x, x.shape.map(() => null), ['f32']);
  return g.add(kernel, [x], { shape: [...x.shape], dtype: 'f32' }, null);
}
