// LLaVA-1.5 (transformers LlavaForConditionalGeneration): CLIP vision tower → hidden state of
// vision_feature_layer (CLS dropped under "default") → multi_modal_projector linear_1 → GELU → linear_2
// → the shared Llama decoder. Both checkpoint layouts load: the current names (model.vision_tower,
// model.multi_modal_projector, model.language_model, lm_head) and the older llava-hf ones (vision_tower,
// multi_modal_projector, language_model.model, language_model.lm_head), told apart by the tensor names.
import type { Gpu } from '../gpu/device.ts';
import type { Graph } from '../graph/graph.ts';
import type { Tensor } from '../graph/tensor.ts';
import { parseLlavaConfig, type LlavaConfig } from './config.ts';
import { ClipVisionTransformer, Linear } from './vit.ts';
import { LlamaModel } from './llama.ts';
import { Taps } from './taps.ts';
import { VarBuilder, type WeightStore, type ModelLoadOptions } from './weights.ts';
import { VisionLanguageModel, loadCheckpointModel } from './vlm.ts';
import { repeatPerFeature, type ModelFamily } from './family.ts';
import { activationOf } from '../ops/elementwise.ts';
import { sliceRows } from '../ops/elementwise.ts';

/** Weight prefixes of the two published layouts. */
export const LAYOUTS = {
  current: {
    vision: 'model.vision_tower.vision_model',
    projector: 'model.multi_modal_projector',
    text: 'model.language_model',
    head: 'lm_head',
    newline: 'model.image_newline',
  },
  legacy: {
    vision: 'vision_tower.vision_model',
    projector: 'multi_modal_projector',
    text: 'language_model.model',
    head: 'language_model.lm_head',
    newline: 'image_newline',
  },
} as const;

export type LlavaLayout = keyof typeof LAYOUTS;

export function detectLayout(names: Iterable<string>): LlavaLayout {
  for (const n of names) {
    if (n.startsWith('language_model.model.') || n.startsWith('vision_tower.')) return 'legacy';
  }
  return 'current';
}

export class LlavaMultiModalProjector {
  readonly linear_1: Linear; // [D_text, D_vision]
  readonly linear_2: Linear; // [D_text, D_text]
  constructor(
    vb: VarBuilder,
    c: LlavaConfig,
  ) {
    const [Dv, Dt] = [c.vision_config.hidden_size, c.text_config.hidden_size];
    this.linear_1 = new Linear(vb.pp('linear_1'), Dv, Dt, c.multimodal_projector_bias);
    this.linear_2 = new Linear(vb.pp('linear_2'), Dt, Dt, c.multimodal_projector_bias);
    this.act = activationOf(c.projector_hidden_act, 'projector_hidden_act');
  }
  readonly act;
  /** The activation is fused into linear_1's epilogue. */
  forward(g: Graph, x: Tensor): Tensor {
    return this.linear_2.forward(g, this.linear_1.forward(g, x, { act: this.act }));
  }
}

export class Llava extends VisionLanguageModel {
  readonly vision_tower: ClipVisionTransformer;
  readonly multi_modal_projector: LlavaMultiModalProjector;
  readonly text: LlamaModel;
  readonly lm_head: Tensor;
  readonly imageTokenId: number;
  readonly tileShape: [number, number, number];
  readonly featuresPerTile: number;

  protected constructor(
    gpu: Gpu,
    store: WeightStore,
    readonly config: LlavaConfig,
    readonly layout: LlavaLayout,
  ) {
    super(gpu, store);
    const names = LAYOUTS[layout];
    const vb = new VarBuilder(store);
    const v = config.vision_config;
    const L = v.num_hidden_layers;
    const index = config.vision_feature_layer >= 0 ? config.vision_feature_layer : L + 1 + config.vision_feature_layer;
    this.vision_tower = new ClipVisionTransformer(vb.pp(names.vision), v, index);
    this.multi_modal_projector = new LlavaMultiModalProjector(vb.pp(names.projector), config);
    this.text = new LlamaModel(vb.pp(names.text), config.text_config);
    const t = config.text_config;
    this.lm_head = config.tie_word_embeddings ? this.text.embed_tokens : vb.pp(names.head).get('weight', [t.vocab_size, t.hidden_size], { role: 'table' });
    this.imageTokenId = config.image_token_index;
    this.tileShape = [v.num_channels, v.image_size, v.image_size];
    this.featuresPerTile = this.vision_tower.patches + (config.vision_feature_select_strategy === 'full' ? 1 : 0);
  }

  static load(gpu: Gpu, dir: string, opts: ModelLoadOptions = {}): Promise<Llava> {
    return loadCheckpointModel(gpu, dir, opts, parseLlavaConfig, (store, config, ckpt) => new Llava(gpu, store, config, detectLayout(ckpt.tensors.keys())));
  }

  /**
   * The projector runs on every row of the selected hidden state, CLS included (one row in 1 + patches);
   * under "default" the placeholders then take the patch rows only, through featureRow().
   */
  encodeImages(g: Graph, pixels: Tensor, taps: Taps): Tensor {
    const hidden = this.vision_tower.forward(g, pixels, taps);
    const out = this.multi_modal_projector.forward(g, hidden);
    const n = this.vision_tower.patches;
    const drop = this.config.vision_feature_select_strategy === 'default';
    if (pixels.dim(0) === 1) {
      // Reference names hold the selected features: CLS dropped under "default".
      if (taps.wants('vision_hidden')) taps.tap(g, 'vision_hidden', drop ? sliceRows(g, hidden, 1, n) : hidden);
      if (taps.wants('projector_out')) taps.tap(g, 'projector_out', drop ? sliceRows(g, out, 1, n) : out);
    }
    return out;
  }

  override featureRow(k: number): number {
    if (this.config.vision_feature_select_strategy === 'full') return k;
    const n = this.vision_tower.patches;
    return Math.floor(k / n) * (n + 1) + 1 + (k % n);
  }
}

/** LLaVA-1.5: one image a tile, the image token once per feature. */
export const llavaFamily: ModelFamily = {
  modelType: 'llava',
  name: 'LLaVA-1.5 (LlavaForConditionalGeneration)',
  load: (gpu, dir, opts) => Llava.load(gpu, dir, opts),
  prompt: repeatPerFeature,
};
