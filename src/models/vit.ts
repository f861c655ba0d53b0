// Vision transformer of Idefics3 / SmolVLM (SigLIP, transformers Idefics3VisionTransformer):
//   patch conv (+bias) + position embedding → N × [LN → MHA → +res → LN → MLP(gelu) → +res] → post LN.
// The encoder layer names (layer_norm1, self_attn.{q,k,v,out}_proj, layer_norm2, mlp.fc1/fc2) are
// also CLIP's, so the layer is shared with other vision towers.
import type { Graph } from '../graph/graph.ts';
import type { Tensor } from '../graph/tensor.ts';
import type { VisionConfig } from './config.ts';
import type { VarBuilder } from './weights.ts';
import type { Taps } from './taps.ts';
import { layerNorm } from '../ops/norm.ts';
import { linear, type NormFold } from '../ops/matmul.ts';
import { attention } from '../ops/attention.ts';
import { add, activationOf, type Activation } from '../ops/elementwise.ts';
import { patchEmbed } from '../ops/patch-embed.ts';
import { classPosition } from '../ops/embedding.ts';

/** nn.Linear: weight [out, in], optional bias [out]. */
export class Linear {
  readonly weight: Tensor; // [out, in]
  readonly bias?: Tensor; // [out]
  constructor(vb: VarBuilder, inDim: number, outDim: number, bias: boolean) {
    this.weight = vb.get('weight', [outDim, inDim], { role: 'linear' });
    if (bias) this.bias = vb.get('bias', [outDim]);
  }
  forward(g: Graph, x: Tensor, opts: { act?: Activation; residual?: Tensor; norm?: NormFold } = {}): Tensor {
    return linear(g, x, this.weight, { bias: this.bias, ...opts });
  }
}

export class LayerNorm {
  readonly weight: Tensor; // [D]
  readonly bias: Tensor; // [D]
  constructor(
    vb: VarBuilder,
    D: number,
    readonly eps: number,
  ) {
    this.weight = vb.get('weight', [D]);
    this.bias = vb.get('bias', [D]);
  }
  forward(g: Graph, x: Tensor): Tensor {
    return layerNorm(g, x, this.weight, this.bias, this.eps);
  }
}

/** Bidirectional multi-head self-attention with biased projections (SigLIP / CLIP). */
export class EncoderAttention {
  readonly q_proj: Linear;
  readonly k_proj: Linear;
  readonly v_proj: Linear;
  readonly out_proj: Linear;
  constructor(
    vb: VarBuilder,
    D: number,
    readonly heads: number,
  ) {
    this.q_proj = new Linear(vb.pp('q_proj'), D, D, true);
    this.k_proj = new Linear(vb.pp('k_proj'), D, D, true);
    this.v_proj = new Linear(vb.pp('v_proj'), D, D, true);
    this.out_proj = new Linear(vb.pp('out_proj'), D, D, true);
  }
  /**
   * x: [N, D] → out_proj(attention) [N, D], with `residual` added in the out_proj epilogue when given.
   * With several images stacked, `block` rows form one image (block-diagonal attention).
   */
  forward(g: Graph, x: Tensor, residual?: Tensor, block = 0): Tensor {
    const q = this.q_proj.forward(g, x);
    const k = this.k_proj.forward(g, x);
    const v = this.v_proj.forward(g, x);
    const o = attention(g, q, k, v, { heads: this.heads, kvHeads: this.heads, causal: false, block });
    return this.out_proj.forward(g, o, { residual });
  }
}

export class EncoderMLP {
  readonly fc1: Linear; // [I, D]
  readonly fc2: Linear; // [D, I]
  constructor(
    vb: VarBuilder,
    D: number,
    I: number,
    readonly act: Activation,
  ) {
    this.fc1 = new Linear(vb.pp('fc1'), D, I, true);
    this.fc2 = new Linear(vb.pp('fc2'), I, D, true);
  }
  forward(g: Graph, x: Tensor, residual: Tensor): Tensor {
    return this.fc2.forward(g, this.fc1.forward(g, x, { act: this.act }), { residual });
  }
}

/** Pre-norm transformer encoder layer (SigLIP and CLIP share it, names included). */
export class EncoderLayer {
  readonly layer_norm1: LayerNorm;
  readonly self_attn: EncoderAttention;
  readonly layer_norm2: LayerNorm;
  readonly mlp: EncoderMLP;
  constructor(vb: VarBuilder, c: VisionConfig) {
    const D = c.hidden_size;
    this.layer_norm1 = new LayerNorm(vb.pp('layer_norm1'), D, c.layer_norm_eps);
    this.self_attn = new EncoderAttention(vb.pp('self_attn'), D, c.num_attention_heads);
    this.layer_norm2 = new LayerNorm(vb.pp('layer_norm2'), D, c.layer_norm_eps);
    this.mlp = new EncoderMLP(vb.pp('mlp'), D, c.intermediate_size, activationOf(c.hidden_act, 'vision_config'));
  }
  /** x: [N, D] → [N, D]. `attnTap` names the attention output before its residual add. */
  forward(g: Graph, x: Tensor, block: number, taps?: Taps, attnTap?: string): Tensor {
    const h = this.layer_norm1.forward(g, x);
    let r: Tensor;
    if (attnTap && taps?.wants(attnTap)) {
      r = add(g, taps.tap(g, attnTap, this.self_attn.forward(g, h, undefined, block)), x);
    } else {
      r = this.self_attn.forward(g, h, x, block);
    }
    return this.mlp.forward(g, this.layer_norm2.forward(g, r), r);
  }
}

/** Idefics3VisionTransformer: embeddings, encoder, post_layernorm. */
export class SiglipVisionTransformer {
  readonly patch_embedding: { weight: Tensor; bias: Tensor }; // [D, C, P, P], [D]
  readonly position_embedding: Tensor; // [(image/patch)², D]
  readonly layers: EncoderLayer[];
  readonly post_layernorm: LayerNorm;
  constructor(
    vb: VarBuilder,
    readonly config: VisionConfig,
  ) {
    const c = config;
    const D = c.hidden_size;
    const side = c.image_size / c.patch_size;
    const emb = vb.pp('embeddings');
    this.patch_embedding = {
      weight: emb.pp('patch_embedding').get('weight', [D, c.num_channels, c.patch_size, c.patch_size]),
      bias: emb.pp('patch_embedding').get('bias', [D]),
    };
    // Added in the patch conv's epilogue, which reads it as f32.
    this.position_embedding = emb.pp('position_embedding').get('weight', [side * side, D], { f32: true });
    this.layers = Array.from({ length: c.num_hidden_layers }, (_, i) => new EncoderLayer(vb.pp('encoder.layers').pp(i), c));
    this.post_layernorm = new LayerNorm(vb.pp('post_layernorm'), D, c.layer_norm_eps);
  }

  /** pixels: [tiles, C, image_size, image_size] → [tiles·patches, D]. */
  forward(g: Graph, pixels: Tensor, taps?: Taps): Tensor {
    const [tiles, C, H, W] = pixels.shape;
    const c = this.config;
    if (C !== c.num_channels || H !== c.image_size || W !== c.image_size) {
      throw new Error(
        `vision encoder: pixel_values are [${tiles}, ${C}, ${H}, ${W}], expected [tiles, ${c.num_channels}, ${c.image_size}, ${c.image_size}] ` +
          '(images are resized and split into image_size tiles by the preprocessor)',
      );
    }
    // Full, unpadded tiles: position ids are 0..N-1 (transformers' bucketize gives the identity here).
    let x = patchEmbed(g, pixels, this.patch_embedding.weight, this.patch_embedding.bias, this.position_embedding);
    taps?.tap(g, 'vision_embeddings', x);
    const block = tiles > 1 ? this.position_embedding.dim(0) : 0;
    this.layers.forEach((layer, i) => {
      x = layer.forward(g, x, block, taps, i === 0 ? 'layer0_vision_attn' : undefined);
      taps?.tap(g, `layer${i}_vision`, x);
    });
    const out = this.post_layernorm.forward(g, x);
    taps?.tap(g, 'vision_hidden', out);
    return out;
  }
}

/**
 * CLIP vision tower (transformers CLIPVisionTransformer) as LLaVA uses it: patch conv without bias,
 * class embedding prepended, position embeddings over 1 + patches, pre_layrnorm, then only the encoder
 * layers up to the selected hidden state (post_layernorm is not used by LLaVA and not loaded).
 */
export class ClipVisionTransformer {
  readonly embeddings: { patch_embedding: { weight: Tensor }; class_embedding: Tensor; position_embedding: { weight: Tensor } };
  readonly pre_layrnorm: LayerNorm;
  readonly layers: EncoderLayer[];
  readonly patches: number;
  constructor(
    vb: VarBuilder,
    readonly config: VisionConfig,
    /** How many encoder layers to run: the hidden state LLaVA selects is the output of the last of them. */
    layersNeeded: number,
  ) {
    const c = config;
    const D = c.hidden_size;
    this.patches = (c.image_size / c.patch_size) ** 2;
    const emb = vb.pp('embeddings');
    this.embeddings = {
      patch_embedding: { weight: emb.pp('patch_embedding').get('weight', [D, c.num_channels, c.patch_size, c.patch_size]) },
      // Added in a kernel that reads them as f32.
      class_embedding: emb.get('class_embedding', [D], { f32: true }),
      position_embedding: { weight: emb.pp('position_embedding').get('weight', [this.patches + 1, D], { f32: true }) },
    };
    this.pre_layrnorm = new LayerNorm(vb.pp('pre_layrnorm'), D, c.layer_norm_eps);
    this.layers = Array.from({ length: layersNeeded }, (_, i) => new EncoderLayer(vb.pp('encoder.layers').pp(i), c));
  }

  /** pixels [tiles, C, S, S] → the selected hidden state [tiles·(1 + patches), D], CLS rows included. */
  forward(g: Graph, pixels: Tensor, taps?: Taps): Tensor {
    const [tiles, C, H, W] = pixels.shape;
    const c = this.config;
    if (C !== c.num_channels || H !== c.image_size || W !== c.image_size) {
      throw new Error(`vision tower: pixel_values are [${tiles}, ${C}, ${H}, ${W}], expected [tiles, ${c.num_channels}, ${c.image_size}, ${c.image_size}]`);
    }
    const e = this.embeddings;
    let x = classPosition(g, patchEmbed(g, pixels, e.patch_embedding.weight), e.class_embedding, e.position_embedding.weight);
    taps?.tap(g, 'vision_embeddings', x);
    x = this.pre_layrnorm.forward(g, x);
    taps?.tap(g, 'vision_pre_layrnorm', x);
    const block = tiles > 1 ? this.patches + 1 : 0;
    this.layers.forEach((layer, i) => {
      x = layer.forward(g, x, block, taps, i === 0 ? 'layer0_vision_attn' : undefined);
      taps?.tap(g, `layer${i}_vision`, x);
    });
    return x;
  }
}
