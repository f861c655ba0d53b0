// Typed model configuration read from an HF config.json, with the defaults of the transformers
// config classes for keys a checkpoint omits (Idefics3VisionConfig, LlamaConfig, Idefics3Config).
// Unknown keys are ignored; a present key of the wrong type is an error naming the file and key.
import { jsonText } from '../io/json.ts';

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

type Json = Record<string, unknown>;

class Reader {
  constructor(
    private readonly obj: Json,
    /** The file and key path, named in every error. */
    readonly where: string,
  ) {}

  private raw(key: string): unknown {
    return this.obj[key];
  }

  int(key: string, dflt?: number): number {
    const v = this.raw(key) ?? dflt;
    // Above 2^31 no dimension, id or length is real; such a value would only make later allocations fail.
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 2 ** 31) {
      throw new ConfigError(`${this.where}: "${key}" must be a non-negative integer below 2^31, got ${jsonText(this.raw(key))}`);
    }
    return v;
  }

  positive(key: string, dflt?: number): number {
    const v = this.int(key, dflt);
    if (v === 0) throw new ConfigError(`${this.where}: "${key}" must be positive, got 0`);
    return v;
  }

  num(key: string, dflt?: number): number {
    const v = this.raw(key) ?? dflt;
    if (typeof v !== 'number' || !Number.isFinite(v)) {
      throw new ConfigError(`${this.where}: "${key}" must be a finite number, got ${jsonText(this.raw(key))}`);
    }
    return v;
  }

  str(key: string, dflt?: string): string {
    const v = this.raw(key) ?? dflt;
    if (typeof v !== 'string') throw new ConfigError(`${this.where}: "${key}" must be a string, got ${jsonText(this.raw(key))}`);
    return v;
  }

  bool(key: string, dflt: boolean): boolean {
    const v = this.raw(key) ?? dflt;
    if (typeof v !== 'boolean') throw new ConfigError(`${this.where}: "${key}" must be true or false, got ${jsonText(this.raw(key))}`);
    return v;
  }

  ids(key: string): number[] {
    const v = this.raw(key);
    if (v === undefined || v === null) return [];
    const list = Array.isArray(v) ? v : [v];
    for (const x of list) {
      if (typeof x !== 'number' || !Number.isInteger(x) || x < 0) {
        throw new ConfigError(`${this.where}: "${key}" must be a token id or a list of them, got ${jsonText(v)}`);
      }
    }
    return list as number[];
  }

  sub(key: string): Reader {
    const v = this.raw(key) ?? {};
    if (typeof v !== 'object' || Array.isArray(v) || v === null) {
      throw new ConfigError(`${this.where}: "${key}" must be an object`);
    }
    return new Reader(v as Json, `${this.where} ${key}`);
  }

  has(key: string): boolean {
    return this.raw(key) !== undefined && this.raw(key) !== null;
  }

  get(key: string): unknown {
    return this.raw(key);
  }
}

/** SigLIP / CLIP vision transformer. */
export interface VisionConfig {
  hidden_size: number;
  intermediate_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  num_channels: number;
  image_size: number;
  patch_size: number;
  layer_norm_eps: number;
  hidden_act: string;
}

/** Llama decoder. */
export interface TextConfig {
  vocab_size: number;
  hidden_size: number;
  intermediate_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  num_key_value_heads: number;
  head_dim: number;
  rms_norm_eps: number;
  rope_theta: number;
  max_position_embeddings: number;
  hidden_act: string;
  attention_bias: boolean;
  mlp_bias: boolean;
  tie_word_embeddings: boolean;
  bos_token_id: number[];
  eos_token_id: number[];
}

export interface Idefics3Config {
  model_type: 'idefics3';
  vision_config: VisionConfig;
  text_config: TextConfig;
  scale_factor: number;
  image_token_id: number;
  tie_word_embeddings: boolean;
}

/** Defaults of transformers' Idefics3VisionConfig (SigLIP). */
const SIGLIP_DEFAULTS: VisionConfig = {
  hidden_size: 1152,
  intermediate_size: 3072,
  num_hidden_layers: 12,
  num_attention_heads: 16,
  num_channels: 3,
  image_size: 224,
  patch_size: 32,
  layer_norm_eps: 1e-6,
  hidden_act: 'gelu_pytorch_tanh',
};

/** Defaults of transformers' CLIPVisionConfig. */
const CLIP_DEFAULTS: VisionConfig = {
  hidden_size: 768,
  intermediate_size: 3072,
  num_hidden_layers: 12,
  num_attention_heads: 12,
  num_channels: 3,
  image_size: 224,
  patch_size: 32,
  layer_norm_eps: 1e-5,
  hidden_act: 'quick_gelu',
};

function visionConfig(r: Reader, d: VisionConfig = SIGLIP_DEFAULTS): VisionConfig {
  const c: VisionConfig = {
    hidden_size: r.positive('hidden_size', d.hidden_size),
    intermediate_size: r.positive('intermediate_size', d.intermediate_size),
    num_hidden_layers: r.int('num_hidden_layers', d.num_hidden_layers),
    num_attention_heads: r.positive('num_attention_heads', d.num_attention_heads),
    num_channels: r.positive('num_channels', d.num_channels),
    image_size: r.positive('image_size', d.image_size),
    patch_size: r.positive('patch_size', d.patch_size),
    layer_norm_eps: r.num('layer_norm_eps', d.layer_norm_eps),
    hidden_act: r.str('hidden_act', d.hidden_act),
  };
  if (c.hidden_size % c.num_attention_heads !== 0) {
    throw new ConfigError(`${r.where}: hidden_size ${c.hidden_size} is not divisible by num_attention_heads ${c.num_attention_heads}`);
  }
  if (c.image_size % c.patch_size !== 0) {
    throw new ConfigError(`${r.where}: image_size ${c.image_size} is not a multiple of patch_size ${c.patch_size}`);
  }
  return c;
}

function textConfig(r: Reader, top: Reader): TextConfig {
  const hidden = r.positive('hidden_size', 4096);
  const heads = r.positive('num_attention_heads', 32);
  const c: TextConfig = {
    vocab_size: r.positive('vocab_size', top.has('vocab_size') ? top.int('vocab_size') : 32000),
    hidden_size: hidden,
    intermediate_size: r.positive('intermediate_size', 11008),
    num_hidden_layers: r.int('num_hidden_layers', 32),
    num_attention_heads: heads,
    num_key_value_heads: r.positive('num_key_value_heads', heads),
    head_dim: r.has('head_dim') ? r.positive('head_dim') : hidden / heads,
    rms_norm_eps: r.num('rms_norm_eps', 1e-6),
    rope_theta: r.num('rope_theta', 10000),
    max_position_embeddings: r.positive('max_position_embeddings', 2048),
    hidden_act: r.str('hidden_act', 'silu'),
    attention_bias: r.bool('attention_bias', false),
    mlp_bias: r.bool('mlp_bias', false),
    tie_word_embeddings: r.bool('tie_word_embeddings', false),
    bos_token_id: r.ids('bos_token_id'),
    eos_token_id: r.ids('eos_token_id'),
  };
  if (!Number.isInteger(c.head_dim) || c.head_dim % 2 !== 0) {
    throw new ConfigError(`${r.where}: head_dim ${c.head_dim} must be an even integer (hidden_size / num_attention_heads when absent)`);
  }
  if (heads % c.num_key_value_heads !== 0) {
    throw new ConfigError(`${r.where}: num_attention_heads ${heads} is not a multiple of num_key_value_heads ${c.num_key_value_heads}`);
  }
  const scaling = r.get('rope_scaling');
  if (scaling !== undefined && scaling !== null) {
    throw new ConfigError(`${r.where}: rope_scaling ${jsonText(scaling)} is not supported (only default RoPE)`);
  }
  if (r.get('rope_interleaved') === true) throw new ConfigError(`${r.where}: rope_interleaved true is not supported`);
  if (r.get('qk_layer_norms') === true) throw new ConfigError(`${r.where}: qk_layer_norms true is not supported`);
  return c;
}

/** Parses an Idefics3 / SmolVLM config.json. `file` is named in every error. */
export function parseIdefics3Config(json: unknown, file: string): Idefics3Config {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new ConfigError(`${file}: not a JSON object`);
  const r = new Reader(json as Json, file);
  const type = r.str('model_type', '');
  if (type !== 'idefics3') {
    throw new ConfigError(`${file}: model_type "${type}" is not an Idefics3/SmolVLM model (expected "idefics3")`);
  }
  const vision = visionConfig(r.sub('vision_config'));
  const text = textConfig(r.sub('text_config'), r);
  const scale = r.positive('scale_factor', 2);
  const side = vision.image_size / vision.patch_size;
  if (side % scale !== 0) {
    throw new ConfigError(`${file}: scale_factor ${scale} does not divide the ${side}×${side} patch grid`);
  }
  const tie = r.bool('tie_word_embeddings', false) || text.tie_word_embeddings;
  return {
    model_type: 'idefics3',
    vision_config: vision,
    text_config: { ...text, tie_word_embeddings: tie },
    scale_factor: scale,
    image_token_id: r.int('image_token_id', 128257),
    tie_word_embeddings: tie,
  };
}

/** Image tokens one image (or tile) becomes: patches / scale_factor². */
export function imageSeqLen(c: Idefics3Config): number {
  const side = c.vision_config.image_size / c.vision_config.patch_size;
  return (side * side) / (c.scale_factor * c.scale_factor);
}

export interface LlavaConfig {
  model_type: 'llava';
  vision_config: VisionConfig;
  text_config: TextConfig;
  image_token_index: number;
  /** Index into the vision tower's hidden states (0 = after pre_layrnorm, i = after layer i − 1; negative from the end). */
  vision_feature_layer: number;
  vision_feature_select_strategy: 'default' | 'full';
  projector_hidden_act: string;
  multimodal_projector_bias: boolean;
  tie_word_embeddings: boolean;
}

/** Parses a LLaVA-1.5 (LlavaForConditionalGeneration) config.json. */
export function parseLlavaConfig(json: unknown, file: string): LlavaConfig {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new ConfigError(`${file}: not a JSON object`);
  const r = new Reader(json as Json, file);
  const type = r.str('model_type', '');
  if (type !== 'llava') throw new ConfigError(`${file}: model_type "${type}" is not LLaVA (expected "llava")`);
  const vr = r.sub('vision_config');
  const vtype = vr.has('model_type') ? vr.str('model_type') : 'clip_vision_model';
  if (vtype !== 'clip_vision_model') throw new ConfigError(`${file}: vision_config.model_type "${vtype}" is not supported (expected clip_vision_model)`);
  const vision = visionConfig(vr, CLIP_DEFAULTS);
  const text = textConfig(r.sub('text_config'), r);
  const layerRaw = r.get('vision_feature_layer') ?? -2;
  if (typeof layerRaw !== 'number' || !Number.isInteger(layerRaw)) {
    throw new ConfigError(`${file}: vision_feature_layer must be an integer (lists of layers are not supported), got ${jsonText(layerRaw)}`);
  }
  const L = vision.num_hidden_layers;
  if (layerRaw < -(L + 1) || layerRaw > L) throw new ConfigError(`${file}: vision_feature_layer ${layerRaw} is outside the ${L + 1} hidden states`);
  const strategy = r.str('vision_feature_select_strategy', 'default');
  if (strategy !== 'default' && strategy !== 'full') {
    throw new ConfigError(`${file}: vision_feature_select_strategy "${strategy}" is not supported (expected "default" or "full")`);
  }
  const tie = r.bool('tie_word_embeddings', false) || text.tie_word_embeddings;
  return {
    model_type: 'llava',
    vision_config: vision,
    text_config: { ...text, tie_word_embeddings: tie },
    image_token_index: r.int('image_token_index', 32000),
    vision_feature_layer: layerRaw,
    vision_feature_select_strategy: strategy,
    projector_hidden_act: r.str('projector_hidden_act', 'gelu'),
    multimodal_projector_bias: r.bool('multimodal_projector_bias', true),
    tie_word_embeddings: tie,
  };
}
