// Patch embedding: a Conv2d with kernel = stride = P read straight from NCHW pixels (im2col folded into
// the matmul's operand indexing, shaders/a-operand.wgsl mode 2), with the conv bias and the learned
// position embedding added in the same kernel's epilogue.
import type { Graph } from '../graph/graph.ts';
import { type Tensor, WEIGHT_DTYPES, expectShape } from '../graph/tensor.ts';
import { matmulNode } from './matmul.ts';

/**
 * pixels: [tiles, C, H, W]; weight: [D, C, P, P] (as stored); bias: [D] or none; pos: [(H/P)·(W/P), D]
 * or none, added to every tile. Returns [tiles·(H/P)·(W/P), D], patches in row-major grid order per tile.
 */
export function patchEmbed(g: Graph, pixels: Tensor, weight: Tensor, bias?: Tensor, pos?: Tensor): Tensor {
  expectShape('patch embedding', 'pixels', pixels, [null, null, null, null], ['f32']);
  const [tiles, C, H, W] = pixels.shape;
  const [D, , P] = weight.shape;
  expectShape('patch embedding', 'weight', weight, [D, C, P, P], WEIGHT_DTYPES);
  if (H % P !== 0 || W % P !== 0) throw new Error(`patch embedding: image ${H}×${W} is not a multiple of the patch size ${P}`);
  const n = (H / P) * (W / P);
  if (pos) expectShape('patch embedding', 'position embedding', pos, [n, D], ['f32']);
  // The conv weight [D, C, P, P] is the matmul weight [D, C·P·P].
  const w2d = g.weight(weight.name, [D, C * P * P], weight.dtype, weight.chunks!, weight.quant);
  return matmulNode(g, pixels, w2d, tiles * n, { mode: 'im2col', C, H, W, P, gridW: W / P }, {
    bias,
    residual: pos,
    residualRows: pos ? n : 0,
    variant: 'auto',
  });
}
