/**
 * Image preprocessing for two processor families, configured by a model directory's `preprocessor_config.json`:
 * Idefics3 / SmolVLM (the semantics of transformers' slow `Idefics3ImageProcessor`) and CLIP / LLaVA-1.5
 * (transformers' slow `CLIPImageProcessor` and `LlavaImageProcessor`, numpy/PIL path). Both share decoding, the
 * Pillow-exact resampling and the rescale/normalize arithmetic below.
 *
 * Idefics3 pipeline for one image (H×W = height×width, L = `size.longest_edge`, M = `max_image_size.longest_edge`):
 *
 * 1. Decode with sharp: first frame of animated images, EXIF orientation applied (what transformers'
 *    `load_image` does with `ImageOps.exif_transpose`), embedded ICC profiles ignored (PIL ignores them too),
 *    16-bit samples reduced to their high byte (as PIL's "RGB;16B" unpacking does), grayscale replicated to RGB,
 *    CMYK converted with PIL's formula `R = (255-K) - (255-K)·C/255` (rounded the PIL way), alpha kept.
 * 2. `do_resize`: longest edge → L, keeping the aspect ratio, upscaling small images too:
 *    W ≥ H: W' = L, H' = trunc(L / (W/H)), +1 if odd; otherwise the same with the roles swapped; each ≥ 1;
 *    then capped so the longest edge ≤ 4096 (transformers' MAX_IMAGE_SIZE).
 * 3. `do_image_splitting`: `resize_for_vision_encoder`: W ≥ H: W'' = ceil(W'/M)·M,
 *    H'' = ceil(trunc(W'' / (W'/H')) / M)·M (roles swapped when H' > W'). If H'' > M or W'' > M the image is cut
 *    into rows = ceil(H''/M) × cols = ceil(W''/M) tiles of M×M in row-major order, followed by the whole H''×W''
 *    image resized to M×M (the "global" image, last). Otherwise (the image is exactly one tile) rows = cols = 0 and
 *    the single M×M image is the only one.
 *    Without splitting: the image is resized to M×M (aspect ratio not kept), rows = cols = 0.
 * 4. `do_convert_rgb`: images with alpha are composited over white (Idefics3's own `convert_to_rgb`: PIL
 *    `alpha_composite` onto an opaque white RGBA image), after the resizes, exactly as transformers orders it.
 * 5. `do_rescale`: float32(float64(x) · rescale_factor); `do_normalize`: (x − mean) / std in float32.
 * 6. Output channel-first float32 [tiles, 3, M, M].
 *
 * Every resize reimplements Pillow's `Image.resize` arithmetic (separable convolution, horizontal pass then
 * vertical, 22-bit fixed-point coefficients, uint8 rounding between passes and between successive resizes,
 * premultiplied alpha for RGBA, nearest via the affine scale path), so the pixels match what transformers
 * produces with PIL bit for bit. sharp only decodes.
 *
 * Checked bit for bit (max |diff| 0) against transformers 4.57.6 + Pillow 12.3 for RGB and RGBA inputs, all six
 * filters, split and unsplit, upscaling and downscaling (test/fixtures/images holds three such references).
 * Where transformers' slow processor misbehaves, this follows the sane path instead:
 * - grayscale ("L") and palette ("P") PIL images: transformers resizes them as mode "P", which PIL forces to
 *   NEAREST; here they are RGB before resizing and use `resample` (= what transformers does after `load_image`,
 *   which calls `.convert("RGB")`, and what the fast processor does);
 * - grayscale+alpha: transformers rejects 2-channel arrays; here it is composited over white like RGBA;
 * - palette transparency (tRNS): transformers drops it; here it is alpha, composited over white;
 * - 16-bit grayscale: PIL's I;16 → RGB clips at 255; here the high byte is used, as for 16-bit RGB;
 * - CMYK: transformers given `Image.open(...)` treats C, M, Y, K as R, G, B, A; here PIL's `.convert("RGB")`
 *   (the `load_image` path) is applied;
 * - `do_convert_rgb` false with an alpha channel: transformers would fail to normalise 4 channels; here the
 *   alpha channel is dropped.
 * Note that transformers' `load_image` converts to RGB by dropping alpha (no white background); this module
 * follows `Idefics3ImageProcessor` given the image as opened, i.e. the white composite.
 *
 * `do_pad` only matters for batches (it pads every sample to the batch's largest tile count with all-zero
 * images and returns a `pixel_attention_mask`); every tile here is M×M, so for one image it is a no-op and
 * batching/padding is left to the caller.
 *
 * CLIP / LLaVA-1.5 pipeline for one image (`CLIPImageProcessor.preprocess`; `LlavaImageProcessor` adds step 3):
 *
 * 1. Decode as above.
 * 2. `do_convert_rgb`: transformers' `convert_to_rgb` is PIL `image.convert("RGB")`, which drops alpha (no white
 *    composite, unlike Idefics3), and it runs first, before any resize. With `do_convert_rgb` false transformers
 *    would fail to normalise 4 channels; here alpha is dropped either way.
 * 3. `do_pad` (`LlavaImageProcessor` only, default false; `CLIPImageProcessor` stores the key and never reads it):
 *    `pad_to_square` onto a max(H, W) square filled with `int(x * 255)` of each `image_mean` channel (truncated:
 *    OpenAI CLIP's mean gives (122, 116, 104), the colour of original LLaVA-1.5's `expand2square`), the image at row
 *    (max − H) // 2 or column (max − W) // 2. Square images are left alone.
 * 4. `do_resize`, `size.shortest_edge` S (`get_resize_output_image_size`, default_to_square False): short side → S,
 *    long side → int(S · long / short), truncated; W ≤ H counts as portrait. `{"height", "width"}` resizes to exactly
 *    that. PIL `resize` with `resample` (default 3, bicubic); an unchanged size is a no-op.
 * 5. `do_center_crop` to `crop_size` ch×cw (`image_transforms.center_crop`): top = (H − ch) // 2,
 *    left = (W − cw) // 2 (floor division); along an axis where the crop is larger than the image, the image is
 *    zero-padded (level 0, before rescaling) and placed at ceil((ch − H) / 2), which is the same window.
 * 6. `do_rescale` / `do_normalize` as step 5 above. Output [1, 3, ch, cw] (the resized size without a crop),
 *    rows = cols = 0.
 * "…Fast" configs are read the same way and get these (slow-path) pixels; the fast processors resize with
 * torchvision, which can differ from PIL by a few levels. llava-hf's LLaVA-1.5 checkpoints ship a `CLIPImageProcessor`
 * config (resize + centre crop, no pad); original LLaVA-1.5 padded to square first, which is what an
 * `LlavaImageProcessor` config with `"do_pad": true` reproduces.
 */
import * as fsp from 'node:fs/promises';
import * as nodePath from 'node:path';
import sharp from 'sharp';
import type { Metadata, SharpOptions } from 'sharp';

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

/** Either processor's config, told apart by `kind` (absent or 'idefics3' = Idefics3). */
export type AnyImageProcessorConfig = ImageProcessorConfig | ClipProcessorConfig;

/** transformers' MAX_IMAGE_SIZE: no resized edge exceeds it. */
const MAX_EDGE = 4096;
/** A bound on CLIP `size`/`crop_size` edges, for config validation only. */
const MAX_CLIP_EDGE = 65536;
/** transformers' OPENAI_CLIP_MEAN / OPENAI_CLIP_STD, `CLIPImageProcessor`'s defaults. */
const OPENAI_CLIP_MEAN: [number, number, number] = [0.48145466, 0.4578275, 0.40821073];
const OPENAI_CLIP_STD: [number, number, number] = [0.26862954, 0.26130258, 0.27577711];

const IDEFICS3_TYPE = /idefics3|smolvlm/i;
/** `image_processor_type`s read as CLIP (the slow, fast and v5 "Pil" class names). */
const CLIP_TYPE = /^(CLIP|Llava)ImageProcessor(Fast|Pil)?$/;

function describe(v: unknown): string {
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

/**
 * Validates a parsed Idefics3/SmolVLM `preprocessor_config.json`. Missing keys take the defaults of transformers'
 * `Idefics3ImageProcessor.__init__` (size 1456, max_image_size 364, LANCZOS, rescale 1/255, mean = std = 0.5).
 * Errors name the file and the key. CLIP/LLaVA configs are rejected: see {@link parseAnyImageProcessorConfig}.
 */
export function parseImageProcessorConfig(json: unknown, file: string): ImageProcessorConfig {
  const { o, get, fail, bool, triple, resample, rescaleFactor } = configReader(json, file);

  const type = o['image_processor_type'];
  if (type !== undefined && (typeof type !== 'string' || !IDEFICS3_TYPE.test(type))) {
    const hint = typeof type === 'string' && CLIP_TYPE.test(type) ? ' (CLIP/LLaVA configs: use parseAnyImageProcessorConfig or loadAnyImageProcessorConfig)' : '';
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
  const { get, fail, bool, triple, resample, rescaleFactor } = configReader(json, file);

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
  // Validated for both; CLIPImageProcessor stores unknown keys such as do_pad as attributes and never reads them.
  const doPad = bool('do_pad', false) && llava;
  if (doPad && !imageMean.every((m) => Math.trunc(m * 255) >= 0 && Math.trunc(m * 255) <= 255)) {
    fail('image_mean', `with do_pad, int(255·mean) must be a uint8 level (0..255) for every channel, got ${describe(imageMean)}`);
  }
  return {
    kind: 'clip',
    doPad,
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
 * Validates a parsed `preprocessor_config.json` of either kind, chosen by `image_processor_type` (Idefics3/SmolVLM
 * or CLIP/LLaVA; absent: `feature_extractor_type` "CLIPFeatureExtractor" means CLIP, anything else Idefics3, as
 * `parseImageProcessorConfig` has always read such files). Idefics3 results carry `kind: 'idefics3'`.
 */
export function parseAnyImageProcessorConfig(json: unknown, file: string): AnyImageProcessorConfig {
  const { get, fail } = configReader(json, file);
  const type = get('image_processor_type');
  if (type === undefined) {
    if (get('feature_extractor_type') === 'CLIPFeatureExtractor') return parseClipProcessorConfig(json, file);
  } else if (typeof type === 'string' && CLIP_TYPE.test(type)) {
    return parseClipProcessorConfig(json, file);
  } else if (typeof type !== 'string' || !IDEFICS3_TYPE.test(type)) {
    fail('image_processor_type', `expected an Idefics3/SmolVLM or a CLIP/LLaVA image processor, got ${describe(type)}`);
  }
  return { kind: 'idefics3', ...parseImageProcessorConfig(json, file) };
}

async function readConfigJson(dir: string): Promise<{ json: unknown; file: string }> {
  const file = nodePath.join(dir, 'preprocessor_config.json');
  let text: string;
  try {
    text = await fsp.readFile(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new Error(`${file}: ${code === 'ENOENT' ? 'file not found' : `cannot read: ${(e as Error).message}`}`, { cause: e });
  }
  try {
    return { json: JSON.parse(text), file };
  } catch (e) {
    throw new Error(`${file}: invalid JSON: ${(e as Error).message}`, { cause: e });
  }
}

/** Reads and validates `dir/preprocessor_config.json` as an Idefics3/SmolVLM config. */
export async function loadImageProcessorConfig(dir: string): Promise<ImageProcessorConfig> {
  const { json, file } = await readConfigJson(dir);
  return parseImageProcessorConfig(json, file);
}

/** Reads and validates `dir/preprocessor_config.json` of either kind (see {@link parseAnyImageProcessorConfig}). */
export async function loadAnyImageProcessorConfig(dir: string): Promise<AnyImageProcessorConfig> {
  const { json, file } = await readConfigJson(dir);
  return parseAnyImageProcessorConfig(json, file);
}

/**
 * Per-call processor arguments, as transformers' processors take them: `do_image_splitting` and
 * `size={"longest_edge": N}` for Idefics3. CLIP/LLaVA processors resize and crop to the vision tower's input
 * and never split, so either override is an error there, naming the processor.
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
  if (cfg.kind === 'clip') {
    const crop = `${cfg.cropSize.height}×${cfg.cropSize.width}`;
    const what = given.length > 1 ? `${given.join(' and ')} are Idefics3 processor options` : `${given[0]} is an Idefics3 processor option`;
    throw new RangeError(`${what}: this model's CLIP/LLaVA processor resizes and crops every image to ${crop} and never splits`);
  }
  if (o.imageSplitting !== undefined && typeof o.imageSplitting !== 'boolean') throw new RangeError(`imageSplitting must be true or false, got ${describe(o.imageSplitting)}`);
  if (o.imageSize !== undefined && !(Number.isInteger(o.imageSize) && o.imageSize >= 1 && o.imageSize <= MAX_EDGE)) {
    throw new RangeError(`imageSize (size.longest_edge) must be an integer in [1, ${MAX_EDGE}], got ${describe(o.imageSize)}`);
  }
  return { ...cfg, doImageSplitting: o.imageSplitting ?? cfg.doImageSplitting, longestEdge: o.imageSize ?? cfg.longestEdge };
}

// ---------------------------------------------------------------------------------------------------------------
// Inputs and errors

export type ImageInput =
  | string /* file path */
  | Buffer
  | Uint8Array
  | { data: Uint8Array; width: number; height: number; channels: 3 | 4 } /* raw RGB(A), row-major, straight alpha */;

export interface PreprocessedImage {
  /** [tiles, 3, height, width] float32, channel-first; tiles in row-major order, the global image last. */
  pixelValues: Float32Array;
  tiles: number;
  height: number;
  width: number;
  /** Split grid (0, 0 when the image was not split), as Idefics3Processor uses for prompt expansion. */
  rows: number;
  cols: number;
}

/**
 * An input image that cannot be used: unreadable, corrupt, empty, zero-size, or over the pixel limit (as given, or
 * once padded or resized by a CLIP/LLaVA config).
 */
export class ImageError extends Error {
  /** The path, when the input was a file. */
  readonly file?: string;

  constructor(message: string, opts?: { file?: string; cause?: unknown }) {
    super(message, opts?.cause !== undefined ? { cause: opts.cause } : undefined);
    this.name = 'ImageError';
    if (opts?.file !== undefined) this.file = opts.file;
  }
}

const DEFAULT_MAX_PIXELS = 100_000_000;

/** 8-bit interleaved pixels; 4 channels = RGBA with straight (not premultiplied) alpha. */
interface Pixels {
  data: Uint8Array;
  width: number;
  height: number;
  channels: 3 | 4;
}

function errText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** How messages name an input, and its path when it is a file. */
function inputLabel(input: ImageInput): { label: string; file?: string } {
  if (typeof input === 'string') return { label: input, file: input };
  if (input instanceof Uint8Array) return { label: `image data (${input.length} bytes)` };
  return { label: 'raw image' };
}

function checkSize(width: number, height: number, maxPixels: number, label: string, file: string | undefined): void {
  if (!(width > 0 && height > 0)) throw new ImageError(`${label}: image has zero size (${width}x${height})`, { file });
  if (width * height > maxPixels) {
    throw new ImageError(
      `${label}: image is ${width}x${height} = ${width * height} pixels, over the limit of ${maxPixels} (opts.maxPixels)`,
      { file },
    );
  }
}

/** An encoded image whose header passed the checks: what sharp reads, and what the header says. */
interface Header {
  src: string | Buffer;
  meta: Metadata;
  label: string;
  file?: string;
}

/** A file that exists and is a non-empty regular file, or non-empty bytes, whose header gives a size within maxPixels. */
async function readHeader(input: string | Uint8Array, maxPixels: number): Promise<Header> {
  let src: string | Buffer;
  const { label, file } = inputLabel(input);
  if (typeof input === 'string') {
    let st;
    try {
      st = await fsp.stat(input);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      throw new ImageError(`${label}: ${code === 'ENOENT' ? 'file not found' : `cannot read: ${errText(e)}`}`, { file, cause: e });
    }
    if (!st.isFile()) throw new ImageError(`${label}: not a regular file`, { file });
    if (st.size === 0) throw new ImageError(`${label}: file is empty (0 bytes)`, { file });
    src = input;
  } else {
    if (input.length === 0) throw new ImageError('image data is empty (0 bytes)');
    src = Buffer.isBuffer(input) ? input : Buffer.from(input.buffer, input.byteOffset, input.byteLength);
  }

  // Header only: the dimensions are checked before any pixel is decoded.
  let meta: Metadata;
  try {
    meta = await sharp(src, { limitInputPixels: false }).metadata();
  } catch (e) {
    throw new ImageError(`${label}: not a readable image (${errText(e)})`, { file, cause: e });
  }
  checkSize(meta.width ?? 0, meta.height ?? 0, maxPixels, label, file);
  return { src, meta, label, file };
}

function maxPixelsOf(opts: { maxPixels?: number }, caller: string): number {
  const maxPixels = opts.maxPixels ?? DEFAULT_MAX_PIXELS;
  if (!(maxPixels > 0)) throw new RangeError(`${caller}: maxPixels must be positive, got ${maxPixels}`);
  return maxPixels;
}

/**
 * The checks preprocessImage() starts with, which need no decoding: the file exists and is a non-empty regular
 * file (or the bytes are not empty), its header parses as an image, and width×height is within `opts.maxPixels`
 * (default 100 megapixels). Throws an ImageError naming the file. A body that is corrupt past the header is only
 * found when decoding. The CLI runs it on every image before it loads a model.
 */
export async function checkImage(input: string | Uint8Array, opts: { maxPixels?: number } = {}): Promise<{ width: number; height: number; format?: string }> {
  const { meta } = await readHeader(input, maxPixelsOf(opts, 'checkImage'));
  return { width: meta.width!, height: meta.height!, format: meta.format };
}

async function decode(input: ImageInput, maxPixels: number): Promise<Pixels> {
  if (typeof input === 'object' && !(input instanceof Uint8Array)) {
    const { data, width, height, channels } = input;
    const { label } = inputLabel(input);
    if (!(Number.isInteger(width) && Number.isInteger(height) && width >= 0 && height >= 0)) {
      throw new ImageError(`${label}: width and height must be non-negative integers, got ${width}x${height}`);
    }
    if (channels !== 3 && channels !== 4) throw new ImageError(`${label}: channels must be 3 or 4, got ${describe(channels)}`);
    checkSize(width, height, maxPixels, label, undefined);
    if (!(data instanceof Uint8Array) || data.length !== width * height * channels) {
      throw new ImageError(`${label}: expected ${width}x${height}x${channels} = ${width * height * channels} bytes, got ${data?.length}`);
    }
    return toRgbOrRgba(data, width, height, channels); // never modified in place
  }

  const { src, meta, label, file } = await readHeader(input, maxPixels);
  // First frame only (sharp's default), EXIF orientation applied, ICC profiles ignored (as PIL does), and
  // 'error' rather than 'warning' so that recoverable decoder warnings PIL tolerates don't reject an image.
  const limit = Number.isFinite(maxPixels) ? Math.floor(maxPixels) : false;
  const opts: SharpOptions = { limitInputPixels: limit, autoOrient: true, ignoreIcc: true, failOn: 'error' };
  try {
    if (meta.space === 'cmyk') {
      const { data, info } = await sharp(src, opts).pipelineColourspace('cmyk').toColourspace('cmyk').raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
      return cmykToRgb(data, info.width, info.height, info.channels);
    }
    const { data, info } = await sharp(src, opts).toColourspace('srgb').raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
    return toRgbOrRgba(data, info.width, info.height, info.channels);
  } catch (e) {
    if (e instanceof ImageError) throw e;
    throw new ImageError(`${label}: cannot decode image (${errText(e)})`, { file, cause: e });
  }
}

/** (a·b)/255 rounded, PIL's MULDIV255. */
function mulDiv255(a: number, b: number): number {
  const t = a * b + 128;
  return ((t >> 8) + t) >> 8;
}

/** PIL's CMYK → RGB conversion (no colour management): R = (255-K) - (255-K)·C/255. */
function cmykToRgb(src: Uint8Array, width: number, height: number, channels: number): Pixels {
  if (channels < 4) throw new Error(`CMYK image decoded with ${channels} channels`);
  const n = width * height;
  const out = new Uint8Array(n * 3);
  for (let i = 0; i < n; i++) {
    const s = i * channels;
    const nk = 255 - src[s + 3];
    for (let c = 0; c < 3; c++) out[i * 3 + c] = nk - mulDiv255(src[s + c], nk);
  }
  return { data: out, width, height, channels: 3 };
}

/** Normalises 1..4 decoded channels to RGB or RGBA; a fully opaque alpha channel is dropped (no effect on results). */
function toRgbOrRgba(src: Uint8Array, width: number, height: number, channels: number): Pixels {
  const n = width * height;
  const hasAlpha = channels === 2 || channels === 4;
  const colour = hasAlpha ? channels - 1 : channels;
  if (colour !== 1 && colour !== 3) throw new Error(`unexpected channel count ${channels}`);
  let opaque = true;
  if (hasAlpha) {
    for (let i = channels - 1; i < src.length; i += channels) {
      if (src[i] !== 255) {
        opaque = false;
        break;
      }
    }
  }
  const outCh: 3 | 4 = opaque ? 3 : 4;
  if (colour === 3 && channels === outCh) return { data: src, width, height, channels: outCh };
  const out = new Uint8Array(n * outCh);
  for (let i = 0; i < n; i++) {
    const s = i * channels;
    const d = i * outCh;
    if (colour === 1) {
      out[d] = out[d + 1] = out[d + 2] = src[s];
    } else {
      out[d] = src[s];
      out[d + 1] = src[s + 1];
      out[d + 2] = src[s + 2];
    }
    if (outCh === 4) out[d + 3] = src[s + channels - 1];
  }
  return { data: out, width, height, channels: outCh };
}

// ---------------------------------------------------------------------------------------------------------------
// Pillow-compatible resampling

interface Filter {
  support: number;
  weight: (x: number) => number;
}

function sinc(x: number): number {
  if (x === 0) return 1;
  const px = x * Math.PI;
  return Math.sin(px) / px;
}

/** PIL's filters, by resampling code (0, nearest, is not a convolution). */
const FILTERS: Record<number, Filter> = {
  1: { support: 3, weight: (x) => (x >= -3 && x < 3 ? sinc(x) * sinc(x / 3) : 0) }, // LANCZOS (a = 3)
  2: { support: 1, weight: (x) => { const a = Math.abs(x); return a < 1 ? 1 - a : 0; } }, // BILINEAR (triangle)
  3: {
    // BICUBIC, Keys cubic with a = -0.5
    support: 2,
    weight: (x) => {
      const a = -0.5;
      const t = Math.abs(x);
      if (t < 1) return ((a + 2) * t - (a + 3)) * t * t + 1;
      if (t < 2) return (((t - 5) * t + 8) * t - 4) * a;
      return 0;
    },
  },
  4: { support: 0.5, weight: (x) => (x > -0.5 && x <= 0.5 ? 1 : 0) }, // BOX
  5: {
    // HAMMING-windowed sinc
    support: 1,
    weight: (x) => {
      if (x === 0) return 1;
      if (x <= -1 || x >= 1) return 0;
      const px = x * Math.PI;
      return (Math.sin(px) / px) * (0.54 + 0.46 * Math.cos(px));
    },
  },
};

const PRECISION_BITS = 22; // 32 - 8 - 2, as PIL's 8-bit resampler
const ROUND_HALF = 1 << (PRECISION_BITS - 1);
const ONE = 1 << PRECISION_BITS;

interface Taps {
  /** First input index per output index. */
  start: Int32Array;
  /** Number of taps per output index. */
  count: Int32Array;
  /** Fixed-point weights, `stride` per output index. */
  weights: Int32Array;
  stride: number;
}

/** Per-output taps for resizing one axis from `inSize` to `outSize`, with PIL's support, centring and rounding. */
function computeTaps(inSize: number, outSize: number, filter: Filter): Taps {
  const scale = inSize / outSize;
  const filterScale = Math.max(scale, 1);
  const support = filter.support * filterScale;
  const stride = Math.ceil(support) * 2 + 1;
  const inv = 1 / filterScale;
  const start = new Int32Array(outSize);
  const count = new Int32Array(outSize);
  const weights = new Int32Array(outSize * stride);
  const w = new Float64Array(stride);
  for (let i = 0; i < outSize; i++) {
    const centre = (i + 0.5) * scale;
    const lo = Math.max(0, Math.trunc(centre - support + 0.5));
    const hi = Math.min(inSize, Math.trunc(centre + support + 0.5));
    const n = hi - lo;
    let sum = 0;
    for (let j = 0; j < n; j++) {
      w[j] = filter.weight((j + lo - centre + 0.5) * inv);
      sum += w[j];
    }
    for (let j = 0; j < n; j++) {
      const v = sum !== 0 ? w[j] / sum : w[j];
      // C's (int) cast of ±0.5-biased values: round half away from zero.
      weights[i * stride + j] = v < 0 ? Math.trunc(-0.5 + v * ONE) : Math.trunc(0.5 + v * ONE);
    }
    start[i] = lo;
    count[i] = n;
  }
  return { start, count, weights, stride };
}

function clip8(acc: number): number {
  const v = Math.floor(acc / ONE);
  return v < 0 ? 0 : v > 255 ? 255 : v;
}

function resampleHorizontal(src: Uint8Array, width: number, height: number, ch: number, outW: number, taps: Taps): Uint8Array {
  const out = new Uint8Array(outW * height * ch);
  const { start, count, weights, stride } = taps;
  for (let y = 0; y < height; y++) {
    const rowIn = y * width * ch;
    let o = y * outW * ch;
    for (let x = 0; x < outW; x++) {
      const n = count[x];
      const k0 = x * stride;
      let p = rowIn + start[x] * ch;
      // All channels of a pixel in one sweep over the taps (ch is 3 or 4).
      let a0 = ROUND_HALF;
      let a1 = ROUND_HALF;
      let a2 = ROUND_HALF;
      let a3 = ROUND_HALF;
      if (ch === 4) {
        for (let j = 0; j < n; j++, p += 4) {
          const k = weights[k0 + j];
          a0 += src[p] * k;
          a1 += src[p + 1] * k;
          a2 += src[p + 2] * k;
          a3 += src[p + 3] * k;
        }
      } else {
        for (let j = 0; j < n; j++, p += 3) {
          const k = weights[k0 + j];
          a0 += src[p] * k;
          a1 += src[p + 1] * k;
          a2 += src[p + 2] * k;
        }
      }
      out[o++] = clip8(a0);
      out[o++] = clip8(a1);
      out[o++] = clip8(a2);
      if (ch === 4) out[o++] = clip8(a3);
    }
  }
  return out;
}

function resampleVertical(src: Uint8Array, width: number, ch: number, outH: number, taps: Taps): Uint8Array {
  const rowLen = width * ch;
  const out = new Uint8Array(rowLen * outH);
  // int32 accumulators as in PIL: |sum| <= 255 * sum|k| + 2^21 stays below 2^31 for every PIL filter.
  const acc = new Int32Array(rowLen);
  const { start, count, weights, stride } = taps;
  for (let y = 0; y < outH; y++) {
    acc.fill(ROUND_HALF);
    const n = count[y];
    for (let j = 0; j < n; j++) {
      const k = weights[y * stride + j];
      if (k === 0) continue;
      const r = (start[y] + j) * rowLen;
      for (let i = 0; i < rowLen; i++) acc[i] += src[r + i] * k;
    }
    const o = y * rowLen;
    for (let i = 0; i < rowLen; i++) {
      const v = acc[i] >> PRECISION_BITS;
      out[o + i] = v < 0 ? 0 : v > 255 ? 255 : v;
    }
  }
  return out;
}

/** PIL's nearest-neighbour scaling (affine scale path: source coordinate accumulated in steps of in/out). */
function resizeNearest(img: Pixels, outW: number, outH: number): Pixels {
  const { data, width, height, channels: ch } = img;
  const xs = new Int32Array(outW);
  const ax = width / outW;
  let xo = ax * 0.5;
  for (let x = 0; x < outW; x++, xo += ax) xs[x] = Math.min(width - 1, Math.trunc(xo));
  const out = new Uint8Array(outW * outH * ch);
  const ay = height / outH;
  let yo = ay * 0.5;
  for (let y = 0; y < outH; y++, yo += ay) {
    const r = Math.min(height - 1, Math.trunc(yo)) * width * ch;
    const o = y * outW * ch;
    for (let x = 0; x < outW; x++) for (let c = 0; c < ch; c++) out[o + x * ch + c] = data[r + xs[x] * ch + c];
  }
  return { data: out, width: outW, height: outH, channels: ch };
}

function premultiply(img: Pixels): Pixels {
  const d = new Uint8Array(img.data.length);
  const s = img.data;
  for (let i = 0; i < s.length; i += 4) {
    const a = s[i + 3];
    d[i] = mulDiv255(s[i], a);
    d[i + 1] = mulDiv255(s[i + 1], a);
    d[i + 2] = mulDiv255(s[i + 2], a);
    d[i + 3] = a;
  }
  return { ...img, data: d };
}

/** In place: PIL's RGBa → RGBA (truncating division, clipped; alpha 0 or 255 left unchanged). */
function unpremultiply(img: Pixels): Pixels {
  const d = img.data;
  for (let i = 0; i < d.length; i += 4) {
    const a = d[i + 3];
    if (a === 0 || a === 255) continue;
    for (let c = 0; c < 3; c++) d[i + c] = Math.min(255, Math.floor((255 * d[i + c]) / a));
  }
  return img;
}

/** PIL `Image.resize((outW, outH), resample)` on an RGB or RGBA image. */
function resize(img: Pixels, outW: number, outH: number, resample: number): Pixels {
  if (outW === img.width && outH === img.height) return img; // PIL returns a copy
  if (resample === 0) return resizeNearest(img, outW, outH);
  const filter = FILTERS[resample];
  const rgba = img.channels === 4;
  let cur = rgba ? premultiply(img) : img;
  const ch = cur.channels;
  if (outW !== cur.width) {
    const taps = computeTaps(cur.width, outW, filter);
    cur = { data: resampleHorizontal(cur.data, cur.width, cur.height, ch, outW, taps), width: outW, height: cur.height, channels: ch };
  }
  if (outH !== cur.height) {
    const taps = computeTaps(cur.height, outH, filter);
    cur = { data: resampleVertical(cur.data, cur.width, ch, outH, taps), width: cur.width, height: outH, channels: ch };
  }
  return rgba ? unpremultiply(cur) : cur;
}

/**
 * The w×h window of `img` whose top-left corner is at (x0, y0): a crop, or, where the window reaches past the
 * image (negative offsets included), a paste of the image onto a canvas of `fill` (one level per channel; zeros
 * when absent).
 */
function extract(img: Pixels, x0: number, y0: number, w: number, h: number, fill?: readonly number[]): Pixels {
  const ch = img.channels;
  const out = new Uint8Array(w * h * ch);
  const xa = Math.max(0, x0);
  const xb = Math.min(img.width, x0 + w);
  const ya = Math.max(0, y0);
  const yb = Math.min(img.height, y0 + h);
  if (fill?.some((v) => v !== 0) && (xa > x0 || ya > y0 || xb < x0 + w || yb < y0 + h)) {
    for (let i = 0; i < w * h; i++) for (let c = 0; c < ch; c++) out[i * ch + c] = fill[c];
  }
  if (xb > xa) {
    for (let y = ya; y < yb; y++) {
      const s = (y * img.width + xa) * ch;
      out.set(img.data.subarray(s, s + (xb - xa) * ch), ((y - y0) * w + (xa - x0)) * ch);
    }
  }
  return { data: out, width: w, height: h, channels: ch };
}

/** PIL `convert("RGB")` of an RGB(A) image: the alpha channel is dropped, not composited. */
function dropAlpha(img: Pixels): Pixels {
  if (img.channels === 3) return img;
  const n = img.width * img.height;
  const out = new Uint8Array(n * 3);
  for (let i = 0; i < n; i++) {
    out[i * 3] = img.data[i * 4];
    out[i * 3 + 1] = img.data[i * 4 + 1];
    out[i * 3 + 2] = img.data[i * 4 + 2];
  }
  return { data: out, width: img.width, height: img.height, channels: 3 };
}

// ---------------------------------------------------------------------------------------------------------------
// Idefics3 geometry

/** `_resize_output_size_rescale_to_max_len` then `_resize_output_size_scale_below_upper_bound(…, 4096)`. */
function longestEdgeSize(height: number, width: number, maxLen: number): [number, number] {
  let h = height;
  let w = width;
  const aspect = w / h;
  if (w >= h) {
    w = maxLen;
    h = Math.trunc(w / aspect);
    if (h % 2 !== 0) h += 1;
  } else {
    h = maxLen;
    w = Math.trunc(h * aspect);
    if (w % 2 !== 0) w += 1;
  }
  h = Math.max(h, 1);
  w = Math.max(w, 1);
  const aspect2 = w / h;
  if (w >= h && w > MAX_EDGE) {
    w = MAX_EDGE;
    h = Math.trunc(w / aspect2);
  } else if (h > w && h > MAX_EDGE) {
    h = MAX_EDGE;
    w = Math.trunc(h * aspect2);
  }
  return [Math.max(h, 1), Math.max(w, 1)];
}

/** `resize_for_vision_encoder`: both edges become multiples of `m`, keeping the aspect ratio as far as that goes. */
function visionEncoderSize(height: number, width: number, m: number): [number, number] {
  const aspect = width / height;
  let h: number;
  let w: number;
  if (width >= height) {
    w = Math.ceil(width / m) * m;
    h = Math.ceil(Math.trunc(w / aspect) / m) * m;
  } else {
    h = Math.ceil(height / m) * m;
    w = Math.ceil(Math.trunc(h * aspect) / m) * m;
  }
  // A truncation to 0 would make PIL fail; one tile is the least the formula means.
  return [Math.max(h, m), Math.max(w, m)];
}

// ---------------------------------------------------------------------------------------------------------------
// CLIP geometry

/**
 * `CLIPImageProcessor.resize` → `get_resize_output_image_size(default_to_square=False)` for `{shortest_edge: s}`:
 * the short side becomes s, the long side int(s · long / short) (truncated); `{height, width}` is taken as is.
 * Returns [height, width].
 */
function clipResizeSize(height: number, width: number, size: ClipProcessorConfig['size']): [number, number] {
  if (!('shortestEdge' in size)) return [size.height, size.width];
  const s = size.shortestEdge;
  if (width <= height) return [Math.trunc((s * height) / width), s];
  return [s, Math.trunc((s * width) / height)];
}

// ---------------------------------------------------------------------------------------------------------------
// The processor

/**
 * Preprocesses one image the way `cfg` says: Idefics3/SmolVLM (an {@link ImageProcessorConfig}, `kind` absent or
 * 'idefics3') or CLIP/LLaVA (a {@link ClipProcessorConfig}, one image, rows = cols = 0); see the module comment.
 * `opts.maxPixels` (default 100 megapixels) bounds width×height, checked from the header before decoding (and, for
 * CLIP, again after padding to square and after resizing).
 */
export async function preprocessImage(
  input: ImageInput,
  cfg: AnyImageProcessorConfig,
  opts: { maxPixels?: number } = {},
): Promise<PreprocessedImage> {
  const maxPixels = maxPixelsOf(opts, 'preprocessImage');
  const img = await decode(input, maxPixels);
  if (cfg.kind === 'clip') {
    const { label, file } = inputLabel(input);
    const frame = clipFrame(img, cfg, (w, h, what) => checkSize(w, h, maxPixels, `${label} (${what})`, file));
    return { pixelValues: toPixelValues([frame], cfg, false), tiles: 1, height: frame.height, width: frame.width, rows: 0, cols: 0 };
  }
  const { frames, rows, cols } = idefics3Frames(img, cfg);
  const m = cfg.maxImageSize;
  return { pixelValues: toPixelValues(frames, cfg, cfg.doConvertRgb), tiles: frames.length, height: m, width: m, rows, cols };
}

/** Idefics3 resizing and splitting: the M×M frames in output order, and the split grid. */
function idefics3Frames(img: Pixels, cfg: ImageProcessorConfig): { frames: Pixels[]; rows: number; cols: number } {
  const m = cfg.maxImageSize;
  const rs = cfg.resample;

  if (cfg.doResize) {
    const [h, w] = longestEdgeSize(img.height, img.width, cfg.longestEdge);
    img = resize(img, w, h, rs);
  }

  if (!cfg.doImageSplitting) return { frames: [resize(img, m, m, rs)], rows: 0, cols: 0 };
  const [h, w] = visionEncoderSize(img.height, img.width, m);
  img = resize(img, w, h, rs);
  if (!(h > m || w > m)) return { frames: [img], rows: 0, cols: 0 };
  const rows = Math.ceil(h / m);
  const cols = Math.ceil(w / m);
  const frames: Pixels[] = [];
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) frames.push(extract(img, c * m, r * m, m, m));
  frames.push(resize(img, m, m, rs));
  return { frames, rows, cols };
}

/**
 * CLIP/LLaVA: convert to RGB, pad to square, resize, centre-crop (see the module comment). `check(w, h, what)` is
 * called on each size an intermediate image is about to take.
 */
function clipFrame(img: Pixels, cfg: ClipProcessorConfig, check: (w: number, h: number, what: string) => void): Pixels {
  // convert_to_rgb is PIL convert("RGB"): alpha dropped, before anything else. Without do_convert_rgb
  // transformers would fail to normalise 4 channels; the alpha channel is dropped all the same.
  img = dropAlpha(img);
  if (cfg.doPad && img.width !== img.height) {
    // LlavaImageProcessor.pad_to_square: background int(x * 255) per channel, image centred at (max - side) // 2.
    const s = Math.max(img.width, img.height);
    check(s, s, 'padded to square');
    const bg = cfg.imageMean.map((x) => Math.trunc(x * 255));
    img = extract(img, -Math.floor((s - img.width) / 2), -Math.floor((s - img.height) / 2), s, s, bg);
  }
  if (cfg.doResize) {
    const [h, w] = clipResizeSize(img.height, img.width, cfg.size);
    check(w, h, 'resized');
    img = resize(img, w, h, cfg.resample);
  }
  if (cfg.doCenterCrop) {
    // center_crop: top = (H - ch) // 2, left = (W - cw) // 2; where the crop is larger it zero-pads, placing the
    // image at ceil((ch - H) / 2) = -((H - ch) // 2): the same window, reaching past the image.
    const { height: ch, width: cw } = cfg.cropSize;
    if (ch !== img.height || cw !== img.width) {
      img = extract(img, Math.floor((img.width - cw) / 2), Math.floor((img.height - ch) / 2), cw, ch);
    }
  }
  return img;
}

/**
 * Channel-first float32 [frames, 3, H, W] of equally sized frames: `do_rescale` float32(float64(x) · factor), then
 * `do_normalize` (x − mean) / std in float32, as numpy computes them. RGBA frames are composited over white when
 * `overWhiteAlpha`; otherwise their alpha channel is ignored.
 */
function toPixelValues(
  frames: Pixels[],
  cfg: Pick<ClipProcessorConfig, 'doRescale' | 'rescaleFactor' | 'doNormalize' | 'imageMean' | 'imageStd'>,
  overWhiteAlpha: boolean,
): Float32Array {
  const plane = frames[0].width * frames[0].height;
  const out = new Float32Array(frames.length * 3 * plane);
  const f32 = Math.fround;
  for (let c = 0; c < 3; c++) {
    // uint8 → float32 for this channel: a 256-entry table covers every pixel.
    const mean = f32(cfg.imageMean[c]);
    const std = f32(cfg.imageStd[c]);
    const lut = new Float32Array(256);
    for (let v = 0; v < 256; v++) {
      let x = cfg.doRescale ? f32(v * cfg.rescaleFactor) : v;
      if (cfg.doNormalize) x = f32(f32(x - mean) / std);
      lut[v] = x;
    }
    for (let t = 0; t < frames.length; t++) {
      const { data: d, channels: ch } = frames[t];
      const dst = out.subarray((t * 3 + c) * plane, (t * 3 + c + 1) * plane);
      if (ch === 3 || !overWhiteAlpha) {
        for (let i = 0, p = c; i < plane; i++, p += ch) dst[i] = lut[d[p]];
      } else {
        for (let i = 0, p = c; i < plane; i++, p += 4) {
          const a = d[p + 3 - c];
          dst[i] = lut[a === 255 ? d[p] : a === 0 ? 255 : overWhite(d[p], a)];
        }
      }
    }
  }
  return out;
}

/** PIL `alpha_composite` of straight-alpha value `v` with alpha `a` (0 < a < 255) onto opaque white. */
function overWhite(v: number, a: number): number {
  // PIL's 7-bit-precision blend with an opaque destination: coef1 = a·128, coef2 = (255 - a)·128.
  const t = v * a * 128 + 255 * (255 - a) * 128 + (0x80 << 7);
  return (((t >> 8) + t) >> 8) >> 7;
}
