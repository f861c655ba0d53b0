// The Idefics3 connector: pixel shuffle by scale_factor s folded into the projection matmul's operand
// indexing (shaders/a-operand.wgsl, mode 1), so the shuffled [seq/s², E·s²] matrix is never stored.
// Reference: transformers Idefics3Connector.pixel_shuffle + modality_projection (no bias).
import type { Graph } from '../graph/graph.ts';
import { type Tensor, WEIGHT_DTYPES, expectShape } from '../graph/tensor.ts';
import { matmulNode, type LinearOptions } from './matmul.ts';

/**
 * x: [tiles·seq, E] vision features, each tile a square gw×gw grid (seq = gw²); w: [out, E·s²].
 * Returns [tiles·seq/s², out].
 */
export function pixelShuffleProject(g: Graph, x: Tensor, w: Tensor, s: number, tiles = 1, variant: LinearOptions['variant'] = 'auto'): Tensor {
  const [rows, E] = x.shape;
  const seq = rows / tiles;
  if (!Number.isInteger(seq)) throw new Error(`pixel shuffle: ${rows} vision tokens do not split into ${tiles} tiles`);
  const gw = Math.round(Math.sqrt(seq));
  if (gw * gw !== seq) throw new Error(`pixel shuffle: ${seq} vision tokens do not form a square grid`);
  if (gw % s !== 0) throw new Error(`pixel shuffle: grid side ${gw} is not divisible by scale_factor ${s}`);
  expectShape('pixel shuffle projector', 'weight', w, [null, E * s * s], WEIGHT_DTYPES);
  return matmulNode(g, x, w, (tiles * seq) / (s * s), { mode: 'pixel_shuffle', s, E, gridW: gw }, { variant });
}
