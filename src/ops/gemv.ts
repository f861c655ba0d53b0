// Matrix-vector products for decode (M = 1 .. GEMV_MAX_M): the gemv entry of shaders/matmul.wgsl, bound
// through the same node and epilogue as the tiled matmul (see matmul.ts); this function forces that variant.
import type { Graph } from '../graph/graph.ts';
import type { Tensor } from '../graph/tensor.ts';
import { linear, type LinearOptions } from './matmul.ts';

export function gemv(g: Graph, x: Tensor, w: Tensor, opts: Omit<LinearOptions, 'variant'> = {}): Tensor {
  return linear(g, x, w, { ...opts, variant: 'gemv' });
}
