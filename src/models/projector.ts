// Idefics3Connector: pixel shuffle by scale_factor, then modality_projection.proj (no bias), fused
// into one matmul (src/ops/projector.ts).
import type { Graph } from '../graph/graph.ts';
import type { Tensor } from '../graph/tensor.ts';
import type { VarBuilder } from './weights.ts';
import { pixelShuffleProject } from '../ops/projector.ts';

export class Idefics3Connector {
  readonly modality_projection: { proj: { weight: Tensor } }; // [D_text, D_vision·s²]
  constructor(
    vb: VarBuilder,
    visionWidth: number,
    textWidth: number,
    readonly scale_factor: number,
  ) {
    const inDim = visionWidth * scale_factor * scale_factor;
    this.modality_projection = { proj: { weight: vb.pp('modality_projection.proj').get('weight', [textWidth, inDim], { role: 'linear' }) } };
  }
  /** x: [tiles·patches, D_vision] → [tiles·patches/s², D_text]. */
  forward(g: Graph, x: Tensor, tiles: number): Tensor {
    return pixelShuffleProject(g, x, this.modality_projection.proj.weight, this.scale_factor, tiles);
  }
}
