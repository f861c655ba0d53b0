// Greedy token selection on the GPU (shaders/sample.wgsl): argmax of the last row of logits, so that
// a decode step reads back 4 bytes.
import type { Graph, Kernel } from '../graph/graph.ts';
import { type Tensor, expectShape } from '../graph/tensor.ts';
import { uniforms } from './common.ts';

const kernel: Kernel<null> = {
  name: 'argmax',
  encode(node, buf) {
    const [x] = node.inputs;
    const [R, V] = x.shape;
    return [
      {
        pipeline: { shader: 'sample', entry: 'argmax' },
        bindings: [
          { binding: 1, buffer: buf(x) },
          { binding: 2, buffer: buf(node.output) },
        ],
        uniforms: uniforms(R - 1, V),
        workgroups: [1],
      },
    ];
  },
};

/** logits: [R, V]; returns [1] u32, the argmax of row R − 1 (lowest index on ties). */
export function argmax(g: Graph, logits: Tensor): Tensor {
  expectShape('argmax', 'logits', logits, [null, null], ['f32']);
  return g.add(kernel, [logits], { shape: [1], dtype: 'u32' }, null);
}
