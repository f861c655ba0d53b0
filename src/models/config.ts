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
  /** Mistral's sliding-window attention: a query sees the last `sliding_window` positions (null: all). */
  sliding_window: number | null;
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

/**
 * Defaults of the decoder config classes for the keys a checkpoint omits (llava-hf's v1.6 configs spell
 * out only a few): transformers' LlamaConfig and MistralConfig.
 */
const TEXT_DEFAULTS = {
  llama: { intermediate_size: 11008, num_key_value_heads: undefined, max_position_embeddings: 2048, sliding_window: null },
  mistral: { intermediate_size: 14336, num_key_value_heads: 8, max_position_embeddings: 4096 * 32, sliding_window: 4096 },
} as const;

function textConfig(r: Reader, top: Reader): TextConfig {
  const type = r.has('model_type') ? r.str('model_type') : 'llama';
  if (!(type in TEXT_DEFAULTS)) {
    throw new ConfigError(`${r.where}: model_type "${type}" is not a supported decoder (expected ${Object.keys(TEXT_DEFAULTS).join(' or ')})`);
  }
  const d = TEXT_DEFAULTS[type as keyof typeof TEXT_DEFAULTS];
  const hidden = r.positive('hidden_size', 4096);
  const heads = r.positive('num_attention_heads', 32);
  const window = r.get('sliding_window') === undefined ? d.sliding_window : r.get('sliding_window') === null ? null : r.positive('sliding_window');
  const c: TextConfig = {
    vocab_size: r.positive('vocab_size', top.has('vocab_size') ? top.int('vocab_size') : 32000),
    hidden_size: hidden,
    intermediate_size: r.positive('intermediate_size', d.intermediate_size),
    num_hidden_layers: r.int('num_hidden_layers', 32),
    num_attention_heads: heads,
    num_key_value_heads: r.positive('num_key_value_heads', d.num_key_value_heads ?? heads),
    head_dim: r.has('head_dim') && r.get('head_dim') !== null ? r.positive('head_dim') : hidden / heads,
    rms_norm_eps: r.num('rms_norm_eps', 1e-6),
    rope_theta: r.num('rope_theta', 10000),
    max_position_embeddings: r.positive('max_position_embeddings', d.max_position_embeddings),
    hidden_act: r.str('hidden_act', 'silu'),
    attention_bias: r.bool('attention_bias', false),
    mlp_bias: r.bool('mlp_bias', false),
    tie_word_embeddings: r.bool('tie_word_embeddings', false),
    bos_token_id: r.ids('bos_token_id'),
    eos_token_id: r.ids('eos_token_id'),
    sliding_window: window,
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
  model_type: 'llava' | 'llava_next';
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

/** LLaVA-NeXT (LlavaNextForConditionalGeneration): LLaVA's, plus the anyres grid. */
export interface LlavaNextConfig extends LlavaConfig {
  model_type: 'llava_next';
  /** [height, width] resolutions an image may be tiled at, multiples of the vision tower's image_size. */
  image_grid_pinpoints: [number, number][];
}

/** The fields LLaVA and LLaVA-NeXT share, read and checked. */
function llavaFields(json: unknown, file: string, type: 'llava' | 'llava_next'): { r: Reader; config: LlavaConfig } {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new ConfigError(`${file}: not a JSON object`);
  const r = new Reader(json as Json, file);
  const got = r.str('model_type', '');
  if (got !== type) throw new ConfigError(`${file}: model_type "${got}" is not ${type === 'llava' ? 'LLaVA' : 'LLaVA-NeXT'} (expected "${type}")`);
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
    r,
    config: {
      model_type: type,
      vision_config: vision,
      text_config: { ...text, tie_word_embeddings: tie },
      image_token_index: r.int('image_token_index', 32000),
      vision_feature_layer: layerRaw,
      vision_feature_select_strategy: strategy,
      projector_hidden_act: r.str('projector_hidden_act', 'gelu'),
      multimodal_projector_bias: r.bool('multimodal_projector_bias', true),
      tie_word_embeddings: tie,
    },
  };
}

/** Parses a LLaVA-1.5 (LlavaForConditionalGeneration) config.json. */
export function parseLlavaConfig(json: unknown, file: string): LlavaConfig {
  return llavaFields(json, file, 'llava').config;
}

/** transformers' LlavaNextConfig default grid. */
const DEFAULT_PINPOINTS: [number, number][] = [
  [336, 672],
  [672, 336],
  [672, 672],
  [1008, 336],
  [336, 1008],
];

/**
 * Parses a LLaVA-NeXT (LlavaNextForConditionalGeneration) config.json: LLaVA's keys, `image_grid_pinpoints`
 * ([height, width] pairs, each a multiple of the vision tower's image_size), and a decoder that is Llama
 * (Vicuna) or Mistral.
 */
export function parseLlavaNextConfig(json: unknown, file: string): LlavaNextConfig {
  const { r, config } = llavaFields(json, file, 'llava_next');
  if (config.vision_feature_select_strategy !== 'default') {
    // The grid features are reshaped to the patch grid, which a CLS row would not fit (transformers fails there too).
    throw new ConfigError(`${file}: vision_feature_select_strategy "${config.vision_feature_select_strategy}" cannot be packed by anyres (expected "default")`);
  }
  if (r.get('use_image_newline_parameter') === false) throw new ConfigError(`${file}: use_image_newline_parameter false is not supported`);
  const raw = r.get('image_grid_pinpoints') ?? DEFAULT_PINPOINTS;
  const S = config.vision_config.image_size;
  const bad = (why: string): never => {
    throw new ConfigError(`${file}: "image_grid_pinpoints" ${why}, got ${jsonText(raw)}`);
  };
  if (!Array.isArray(raw) || raw.length === 0) bad('must be a non-empty list of [height, width] pairs');
  const pinpoints = (raw as unknown[]).map((p) => {
    if (!Array.isArray(p) || p.length !== 2 || !p.every((x) => typeof x === 'number' && Number.isInteger(x) && x > 0)) bad('must hold [height, width] pairs of positive integers');
    const [h, w] = p as [number, number];
    if (h % S !== 0 || w % S !== 0) bad(`must be multiples of the vision tower's image_size ${S} (${h}×${w} is not)`);
    return [h, w] as [number, number];
  });
  return { ...config, model_type: 'llava_next', image_grid_pinpoints: pinpoints };
}
