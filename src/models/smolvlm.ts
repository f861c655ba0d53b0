// SmolVLM / Idefics3 (transformers Idefics3ForConditionalGeneration): SigLIP vision tower → pixel-shuffle
// connector → Llama decoder → lm_head. Weights under model.vision_model, model.connector, model.text_model
// and lm_head (tied to embed_tokens when tie_word_embeddings).
import type { Gpu } from '../gpu/device.ts';
import type { Graph } from '../graph/graph.ts';
import type { Tensor } from '../graph/tensor.ts';
import { parseIdefics3Config, imageSeqLen, type Idefics3Config } from './config.ts';
import { SiglipVisionTransformer } from './vit.ts';
import { Idefics3Connector } from './projector.ts';
import { LlamaModel } from './llama.ts';
import { Taps } from './taps.ts';
import { VarBuilder, type WeightStore, type ModelLoadOptions } from './weights.ts';
import { VisionLanguageModel, loadCheckpointModel } from './vlm.ts';
import type { ModelFamily } from './family.ts';
import { expandImages, imageSeqLenOf, imageTokensOf } from '../text/prompt.ts';

export class SmolVLM extends VisionLanguageModel {
  readonly vision_model: SiglipVisionTransformer;
  readonly connector: Idefics3Connector;
  readonly text: LlamaModel;
  readonly lm_head: Tensor;
  readonly imageTokenId: number;
  readonly tileShape: [number, number, number];
  readonly featuresPerTile: number;

  private constructor(
    gpu: Gpu,
    store: WeightStore,
    readonly config: Idefics3Config,
  ) {
    super(gpu, store);
    const vb = new VarBuilder(store);
    const v = config.vision_config;
    const t = config.text_config;
    this.vision_model = new SiglipVisionTransformer(vb.pp('model.vision_model'), v);
    this.connector = new Idefics3Connector(vb.pp('model.connector'), v.hidden_size, t.hidden_size, config.scale_factor);
    this.text = new LlamaModel(vb.pp('model.text_model'), t);
    this.lm_head = config.tie_word_embeddings ? this.text.embed_tokens : vb.get('lm_head.weight', [t.vocab_size, t.hidden_size], { role: 'table' });
    this.imageTokenId = config.image_token_id;
    this.tileShape = [v.num_channels, v.image_size, v.image_size];
    this.featuresPerTile = imageSeqLen(config);
  }

  static load(gpu: Gpu, dir: string, opts: ModelLoadOptions = {}): Promise<SmolVLM> {
    return loadCheckpointModel(gpu, dir, opts, parseIdefics3Config, (store, config) => new SmolVLM(gpu, store, config));
  }

  encodeImages(g: Graph, pixels: Tensor, taps: Taps): Tensor {
    const tiles = pixels.dim(0);
    const hidden = this.vision_model.forward(g, pixels, taps);
    return taps.tap(g, 'projector_out', this.connector.forward(g, hidden, tiles));
  }
}

/** SmolVLM / Idefics3: each image's tiles as Idefics3Processor lays them out, image_seq_len placeholders a tile. */
export const idefics3Family: ModelFamily = {
  modelType: 'idefics3',
  name: 'SmolVLM / Idefics3 (Idefics3ForConditionalGeneration)',
  load: (gpu, dir, opts) => SmolVLM.load(gpu, dir, opts),
  prompt(md, model) {
    const seqLen = imageSeqLenOf(md);
    if (seqLen !== model.featuresPerTile) {
      throw new Error(`${md.path('processor_config.json')}: image_seq_len ${seqLen} differs from the ${model.featuresPerTile} features per image the model config gives`);
    }
    const tokens = imageTokensOf(md);
    return (chat, images) => expandImages(chat, images.map((p) => ({ rows: p.rows, cols: p.cols })), seqLen, tokens);
  },
};
