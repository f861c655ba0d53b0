// Image processor configuration: the typed `preprocessor_config.json` of each processor family (Idefics3/SmolVLM,
// CLIP/LLaVA-1.5, LLaVA-NeXT), read with transformers' defaults, and the per-call overrides. Errors name the file
// and the key.
import { ModelDir } from '../io/model-dir.ts';
import { FILTERS } from './resample.ts';

// ---------------------------------------------------------------------------------------------------------------
// Configuration

export interface ImageProcessorConfig {
  /**
   * The discriminant in {@link AnyImageProcessorConfig}: `loadAnyImageProcessorConfig` sets it to 'idefics3';
   * `parseImageProcessorConfig` leaves it out. Absent means Idefics3.
   */
  kind?: 'idefics3';
  doConvertRgb: boolean;
  doResize: boolean;
  /** `size.longest_edge` */
  longestEdge: number;
  doImageSplitting: boolean;
  /** `max_image_size.longest_edge`: the tile side and the vision encoder's input size. */
  maxImageSize: number;
  /** PIL resampling code: 0 nearest, 1 lanczos, 2 bilinear, 3 bicubic, 4 box, 5 hamming. */
  resample: number;
  doRescale: boolean;
  rescaleFactor: number;
  doNormalize: boolean;
  imageMean: [number, number, number];
  imageStd: [number, number, number];
}

/** transformers' `CLIPImageProcessor` / `LlavaImageProcessor` settings (see the module comment). */
export interface ClipProcessorConfig {
  kind: 'clip';
  /** `LlavaImageProcessor`'s `do_pad` (pad to a square with the mean colour, before resizing); always false for `CLIPImageProcessor`, which ignores the key. */
  doPad: boolean;
  /** Alpha is dropped whatever its value (see the module comment). */
  doConvertRgb: boolean;
  doResize: boolean;
  /** `size`: `{"shortest_edge": S}` (aspect ratio kept) or `{"height": H, "width": W}` (exact). */
  size: { shortestEdge: number } | { height: number; width: number };
  /** PIL resampling code: 0 nearest, 1 lanczos, 2 bilinear, 3 bicubic, 4 box, 5 hamming. */
  resample: number;
  doCenterCrop: boolean;
  cropSize: { height: number; width: number };
  doRescale: boolean;
  rescaleFactor: number;
  doNormalize: boolean;
  imageMean: [number, number, number];
  imageStd: [number, number, number];
}

/**
 * transformers' `LlavaNextImageProcessor` settings (see llava-next.ts): CLIP's, applied to every tile, plus the
 * grid resolutions an image may be tiled at.
 */
export interface LlavaNextProcessorConfig extends Omit<ClipProcessorConfig, 'kind' | 'doPad'> {
  kind: 'llava_next';
  /** Pads the tile dimension of a batch to its largest tile count with zero tiles: a no-op for one image. */
  doPad: boolean;
  /**
   * `image_grid_pinpoints`: the [height, width] resolutions the image may be resized and padded to before it is
   * cut into `crop_size.height`-square tiles; each a multiple of that side.
   */
  imageGridPinpoints: [number, number][];
}

/** Any processor's config, told apart by `kind` (absent or 'idefics3' = Idefics3). */
export type AnyImageProcessorConfig = ImageProcessorConfig | ClipProcessorConfig | LlavaNextProcessorConfig;

/** transformers' MAX_IMAGE_SIZE: no resized edge exceeds it. */
export const MAX_EDGE = 4096;
/** A bound on CLIP `size`/`crop_size` edges, for config validation only. */
const MAX_CLIP_EDGE = 65536;
/** transformers' OPENAI_CLIP_MEAN / OPENAI_CLIP_STD, `CLIPImageProcessor`'s defaults. */
const OPENAI_CLIP_MEAN: [number, number, number] = [0.48145466, 0.4578275, 0.40821073];
const OPENAI_CLIP_STD: [number, number, number] = [0.26862954, 0.26130258, 0.27577711];

const IDEFICS3_TYPE = /idefics3|smolvlm/i;
/** `image_processor_type`s read as CLIP (the slow, fast and v5 "Pil" class names). */
const CLIP_TYPE = /^(CLIP|Llava)ImageProcessor(Fast|Pil)?$/;
/** `image_processor_type`s read as LLaVA-NeXT (the slow, fast and v5 "Pil" class names). */
const LLAVA_NEXT_TYPE = /^LlavaNextImageProcessor(Fast|Pil)?$/;
/** `LlavaNextImageProcessor`'s default `image_grid_pinpoints` (those of the published llava-v1.6 checkpoints). */
const LLAVA_NEXT_PINPOINTS: [number, number][] = [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]];

export function describe(v: unknown): string {
  if (v === undefined) return 'undefined';
  const s = JSON.stringify(v);
  return s === undefined ? String(v) : s.length > 80 ? `${s.slice(0, 77)}...` : s;
}

/** Typed access to a parsed `preprocessor_config.json`, with errors that name the file and the key. */
function configReader(json: unknown, file: string) {
  const fail = (key: string, msg: string): never => {
    throw new Error(`${file}: ${key === '' ? '' : `key "${key}": `}${msg}`);
  };
  if (json === null || typeof json !== 'object' || Array.isArray(json)) fail('', `expected a JSON object, got ${describe(json)}`);
  const o = json as Record<string, unknown>;
  /** The value of `key`, or undefined when it is absent or null (transformers' "use the default"). */
  const get = (key: string): unknown => (o[key] === null ? undefined : o[key]);
  const bool = (key: string, dflt: boolean): boolean => {
    const v = get(key);
    if (v === undefined) return dflt;
    if (typeof v !== 'boolean') fail(key, `expected true or false, got ${describe(v)}`);
    return v as boolean;
  };
  const triple = (key: string, dflt: [number, number, number], nonZero: boolean): [number, number, number] => {
    const v = get(key);
    if (v === undefined) return dflt;
    const arr: unknown[] = typeof v === 'number' ? [v, v, v] : Array.isArray(v) ? v : [];
    const ok = (x: unknown): x is number => typeof x === 'number' && Number.isFinite(x) && (!nonZero || x !== 0);
    if (arr.length !== 3 || !arr.every(ok)) {
      fail(key, `expected a number or 3 finite${nonZero ? ' non-zero' : ''} numbers, got ${describe(v)}`);
    }
    return [arr[0], arr[1], arr[2]] as [number, number, number];
  };
  const resample = (dflt: number): number => {
    const rs = get('resample');
    if (rs === undefined) return dflt;
    if (typeof rs !== 'number' || !Number.isInteger(rs) || !(rs in FILTERS || rs === 0)) {
      fail('resample', `expected a PIL resampling code 0..5 (0 nearest, 1 lanczos, 2 bilinear, 3 bicubic, 4 box, 5 hamming), got ${describe(rs)}`);
    }
    return rs as number;
  };
  const rescaleFactor = (): number => {
    const rf = get('rescale_factor');
    if (rf === undefined) return 1 / 255;
    if (typeof rf !== 'number' || !Number.isFinite(rf) || rf <= 0) fail('rescale_factor', `expected a positive number, got ${describe(rf)}`);
    return rf as number;
  };
  return { o, get, fail, bool, triple, resample, rescaleFactor };
}

type ConfigReader = ReturnType<typeof configReader>;

/**
 * Validates a parsed Idefics3/SmolVLM `preprocessor_config.json`. Missing keys take the defaults of transformers'
 * `Idefics3ImageProcessor.__init__` (size 1456, max_image_size 364, LANCZOS, rescale 1/255, mean = std = 0.5).
 * Errors name the file and the key. CLIP/LLaVA configs are rejected: see {@link parseAnyImageProcessorConfig}.
 */
export function parseImageProcessorConfig(json: unknown, file: string): ImageProcessorConfig {
  const { o, get, fail, bool, triple, resample, rescaleFactor } = configReader(json, file);

  const type = o['image_processor_type'];
  if (type !== undefined && (typeof type !== 'string' || !IDEFICS3_TYPE.test(type))) {
    const other = typeof type === 'string' && (CLIP_TYPE.test(type) || LLAVA_NEXT_TYPE.test(type));
    const hint = other ? ' (CLIP/LLaVA configs: use parseAnyImageProcessorConfig or loadAnyImageProcessorConfig)' : '';
    fail('image_processor_type', `expected an Idefics3/SmolVLM image processor, got ${describe(type)}${hint}`);
  }
  const edge = (key: string, dflt: number): number => {
    const v = get(key);
    if (v === undefined) return dflt;
    if (typeof v !== 'object' || Array.isArray(v)) fail(key, `expected an object like {"longest_edge": N}, got ${describe(v)}`);
    const le = (v as Record<string, unknown>)['longest_edge'];
    if (le === undefined) fail(key, `only {"longest_edge": N} is supported, got ${describe(v)}`);
    if (typeof le !== 'number' || !Number.isInteger(le) || le < 1 || le > MAX_EDGE) {
      fail(`${key}.longest_edge`, `expected an integer in [1, ${MAX_EDGE}], got ${describe(le)}`);
    }
    return le as number;
  };

  const doResize = bool('do_resize', true);
  const longestEdge = edge('size', 4 * 364);
  const maxImageSize = edge('max_image_size', 364);
  const rs = resample(1);
  const rf = rescaleFactor();
  bool('do_pad', true); // validated only: a no-op for a single image (see the module comment)
  return {
    doConvertRgb: bool('do_convert_rgb', true),
    doResize,
    longestEdge,
    doImageSplitting: bool('do_image_splitting', true),
    maxImageSize,
    resample: rs,
    doRescale: bool('do_rescale', true),
    rescaleFactor: rf,
    doNormalize: bool('do_normalize', true),
    imageMean: triple('image_mean', [0.5, 0.5, 0.5], false),
    imageStd: triple('image_std', [0.5, 0.5, 0.5], true),
  };
}

/**
 * Validates a parsed CLIP/LLaVA `preprocessor_config.json`: `image_processor_type` "CLIPImageProcessor",
 * "LlavaImageProcessor" (either with a "Fast" or "Pil" suffix), or absent (then `feature_extractor_type`, if
 * present, must be "CLIPFeatureExtractor"). Missing keys take the defaults of transformers'
 * `CLIPImageProcessor.__init__` (shortest_edge 224, BICUBIC, center crop 224×224, rescale 1/255, OpenAI CLIP
 * mean/std; `LlavaImageProcessor`: do_pad false). Integer `size`/`crop_size` are read as transformers'
 * `get_size_dict` does (`size` N = shortest edge N, `crop_size` N = N×N). Errors name the file and the key.
 */
export function parseClipProcessorConfig(json: unknown, file: string): ClipProcessorConfig {
  const r = configReader(json, file);
  const { get, fail, bool } = r;

  const type = get('image_processor_type');
  let llava = false;
  if (type !== undefined) {
    if (typeof type !== 'string' || !CLIP_TYPE.test(type)) {
      fail('image_processor_type', `expected CLIPImageProcessor or LlavaImageProcessor (optionally …Fast), got ${describe(type)}`);
    }
    llava = (type as string).startsWith('Llava');
  } else {
    const fe = get('feature_extractor_type');
    if (fe !== undefined && fe !== 'CLIPFeatureExtractor') fail('feature_extractor_type', `expected "CLIPFeatureExtractor", got ${describe(fe)}`);
  }
  const fields = clipFields(r);
  // Validated for both; CLIPImageProcessor stores unknown keys such as do_pad as attributes and never reads them.
  const doPad = bool('do_pad', false) && llava;
  if (doPad && !fields.imageMean.every((m) => Math.trunc(m * 255) >= 0 && Math.trunc(m * 255) <= 255)) {
    fail('image_mean', `with do_pad, int(255·mean) must be a uint8 level (0..255) for every channel, got ${describe(fields.imageMean)}`);
  }
  return { kind: 'clip', doPad, ...fields };
}

/** The `CLIPImageProcessor` keys, which `LlavaNextImageProcessor` shares (with the same defaults). */
function clipFields(r: ConfigReader): Omit<ClipProcessorConfig, 'kind' | 'doPad'> {
  const { get, fail, bool, triple, resample, rescaleFactor } = r;
  const positive = (key: string, v: unknown): number => {
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > MAX_CLIP_EDGE) {
      fail(key, `expected an integer in [1, ${MAX_CLIP_EDGE}], got ${describe(v)}`);
    }
    return v as number;
  };
  /** `{"height", "width"}` only (null when the object has other keys). */
  const heightWidth = (key: string, v: object): { height: number; width: number } | null => {
    const keys = Object.keys(v).sort().join(',');
    if (keys !== 'height,width') return null;
    const r = v as Record<string, unknown>;
    return { height: positive(`${key}.height`, r['height']), width: positive(`${key}.width`, r['width']) };
  };
  const isObject = (v: unknown): v is object => typeof v === 'object' && v !== null && !Array.isArray(v);

  let size: ClipProcessorConfig['size'] = { shortestEdge: 224 };
  const sz = get('size');
  if (typeof sz === 'number') {
    size = { shortestEdge: positive('size', sz) };
  } else if (sz !== undefined) {
    const hw = isObject(sz) ? heightWidth('size', sz) : null;
    if (hw) size = hw;
    else if (isObject(sz) && Object.keys(sz).join(',') === 'shortest_edge') size = { shortestEdge: positive('size.shortest_edge', (sz as Record<string, unknown>)['shortest_edge']) };
    else fail('size', `expected {"shortest_edge": N} or {"height": H, "width": W}, got ${describe(sz)}`);
  }
  let cropSize = { height: 224, width: 224 };
  const cs = get('crop_size');
  if (typeof cs === 'number') {
    const n = positive('crop_size', cs);
    cropSize = { height: n, width: n };
  } else if (cs !== undefined) {
    const hw = isObject(cs) ? heightWidth('crop_size', cs) : null;
    if (!hw) fail('crop_size', `expected {"height": H, "width": W}, got ${describe(cs)}`);
    cropSize = hw!;
  }
  const doResize = bool('do_resize', true);
  const rs = resample(3);
  const doCenterCrop = bool('do_center_crop', true);
  const rf = rescaleFactor();
  const imageMean = triple('image_mean', OPENAI_CLIP_MEAN, false);
  return {
    doConvertRgb: bool('do_convert_rgb', true),
    doResize,
    size,
    resample: rs,
    doCenterCrop,
    cropSize,
    doRescale: bool('do_rescale', true),
    rescaleFactor: rf,
    doNormalize: bool('do_normalize', true),
    imageMean,
    imageStd: triple('image_std', OPENAI_CLIP_STD, true),
  };
}

/**
 * Validates a parsed LLaVA-NeXT `preprocessor_config.json`: `image_processor_type` "LlavaNextImageProcessor"
 * (optionally with a "Fast" or "Pil" suffix). The CLIP keys are read as {@link parseClipProcessorConfig} reads them,
 * with the same defaults (those of `LlavaNextImageProcessor.__init__`, which adds do_pad true and the published
 * llava-v1.6 `image_grid_pinpoints`). `image_grid_pinpoints` must be a non-empty list of [height, width] pairs of
 * positive integers, each a multiple of `crop_size.height` (transformers cuts tiles of that side and counts the
 * grid by floor division, so any other size would give tiles the model does not count). Errors name the file and
 * the key.
 */
export function parseLlavaNextProcessorConfig(json: unknown, file: string): LlavaNextProcessorConfig {
  const r = configReader(json, file);
  const { get, fail, bool } = r;

  const type = get('image_processor_type');
  if (typeof type !== 'string' || !LLAVA_NEXT_TYPE.test(type)) {
    fail('image_processor_type', `expected LlavaNextImageProcessor (optionally …Fast or …Pil), got ${describe(type)}`);
  }
  const fields = clipFields(r);
  const doPad = bool('do_pad', true); // batch padding only: validated, a no-op for one image
  const key = 'image_grid_pinpoints';
  let pinpoints = LLAVA_NEXT_PINPOINTS;
  const v = get(key);
  if (v !== undefined) {
    const want = `expected a non-empty list of [height, width] pairs of integers in [1, ${MAX_CLIP_EDGE}]`;
    if (!Array.isArray(v) || v.length === 0) fail(key, `${want}, got ${describe(v)}`);
    const side = (x: unknown) => typeof x === 'number' && Number.isInteger(x) && x >= 1 && x <= MAX_CLIP_EDGE;
    (v as unknown[]).forEach((p, i) => {
      if (!Array.isArray(p) || p.length !== 2 || !p.every(side)) fail(key, `${want}; entry ${i} is ${describe(p)} in ${describe(v)}`);
    });
    pinpoints = (v as [number, number][]).map(([h, w]) => [h, w]);
  }
  const tile = fields.cropSize.height;
  const bad = pinpoints.findIndex(([h, w]) => h % tile !== 0 || w % tile !== 0);
  if (bad >= 0) {
    fail(key, `every resolution must be a multiple of the tile side crop_size.height ${tile}; entry ${bad} is ${describe(pinpoints[bad])}`);
  }
  return { kind: 'llava_next', doPad, ...fields, imageGridPinpoints: pinpoints };
}

/**
 * Validates a parsed `preprocessor_config.json` of any kind, chosen by `image_processor_type` (Idefics3/SmolVLM,
 * CLIP/LLaVA or LLaVA-NeXT; absent: `feature_extractor_type` "CLIPFeatureExtractor" means CLIP, anything else Idefics3, as
 * `parseImageProcessorConfig` has always read such files). Idefics3 results carry `kind: 'idefics3'`.
 */
export function parseAnyImageProcessorConfig(json: unknown, file: string): AnyImageProcessorConfig {
  const { get, fail } = configReader(json, file);
  const type = get('image_processor_type');
  if (type === undefined) {
    if (get('feature_extractor_type') === 'CLIPFeatureExtractor') return parseClipProcessorConfig(json, file);
  } else if (typeof type === 'string' && CLIP_TYPE.test(type)) {
    return parseClipProcessorConfig(json, file);
  } else if (typeof type === 'string' && LLAVA_NEXT_TYPE.test(type)) {
    return parseLlavaNextProcessorConfig(json, file);
  } else if (typeof type !== 'string' || !IDEFICS3_TYPE.test(type)) {
    fail('image_processor_type', `expected an Idefics3/SmolVLM, a CLIP/LLaVA or a LLaVA-NeXT image processor, got ${describe(type)}`);
  }
  return { kind: 'idefics3', ...parseImageProcessorConfig(json, file) };
}

/** A directory's preprocessor_config.json, read by the one reader of model directories (ModelDir). */
async function readConfigJson(dir: string): Promise<{ json: unknown; file: string }> {
  const md = await ModelDir.open(dir, ['preprocessor_config.json']);
  return { json: md.required('preprocessor_config.json'), file: md.path('preprocessor_config.json') };
}

/** Reads and validates `dir/preprocessor_config.json` as an Idefics3/SmolVLM config. */
export async function loadImageProcessorConfig(dir: string): Promise<ImageProcessorConfig> {
  const { json, file } = await readConfigJson(dir);
  return parseImageProcessorConfig(json, file);
}

/** Reads and validates `dir/preprocessor_config.json` of any kind (see {@link parseAnyImageProcessorConfig}). */
export async function loadAnyImageProcessorConfig(dir: string): Promise<AnyImageProcessorConfig> {
  const { json, file } = await readConfigJson(dir);
  return parseAnyImageProcessorConfig(json, file);
}

/**
 * Per-call processor arguments, as transformers' processors take them: `do_image_splitting` and
 * `size={"longest_edge": N}` for Idefics3. CLIP/LLaVA processors resize and crop to the vision tower's input
 * and never split, and LLaVA-NeXT's tiles follow its `image_grid_pinpoints`, so either override is an error there,
 * naming the processor.
 */
export interface ImageProcessorOverrides {
  /** Idefics3 `do_image_splitting`: false encodes each image as one tile (max_image_size²). */
  imageSplitting?: boolean;
  /** Idefics3 `size.longest_edge`: the image's longest edge before splitting into max_image_size tiles. */
  imageSize?: number;
}

/** The processor config with the overrides applied (the config itself when there are none). */
export function withOverrides<C extends AnyImageProcessorConfig>(cfg: C, o: ImageProcessorOverrides): C {
  const given = (['imageSplitting', 'imageSize'] as const).filter((k) => o[k] !== undefined);
  if (!given.length) return cfg;
  if (cfg.kind === 'clip' || cfg.kind === 'llava_next') {
    const what = given.length > 1 ? `${given.join(' and ')} are Idefics3 processor options` : `${given[0]} is an Idefics3 processor option`;
    if (cfg.kind === 'clip') {
      const crop = `${cfg.cropSize.height}×${cfg.cropSize.width}`;
      throw new RangeError(`${what}: this model's CLIP/LLaVA processor resizes and crops every image to ${crop} and never splits`);
    }
    const tile = `${cfg.cropSize.height}×${cfg.cropSize.height}`;
    const grids = cfg.imageGridPinpoints.map(([h, w]) => `${h}×${w}`).join(', ');
    throw new RangeError(
      `${what}: this model's LLaVA-NeXT processor cuts every image into ${tile} tiles at one of its image_grid_pinpoints (${grids}), after the whole image as one tile`,
    );
  }
  if (o.imageSplitting !== undefined && typeof o.imageSplitting !== 'boolean') throw new RangeError(`imageSplitting must be true or false, got ${describe(o.imageSplitting)}`);
  if (o.imageSize !== undefined && !(Number.isInteger(o.imageSize) && o.imageSize >= 1 && o.imageSize <= MAX_EDGE)) {
    throw new RangeError(`imageSize (size.longest_edge) must be an integer in [1, ${MAX_EDGE}], got ${describe(o.imageSize)}`);
  }
  return { ...cfg, doImageSplitting: o.imageSplitting ?? cfg.doImageSplitting, longestEdge: o.imageSize ?? cfg.longestEdge };
}
