/**
 * Image preprocessing for three processor families, configured by a model directory's `preprocessor_config.json`:
 * Idefics3 / SmolVLM (the semantics of transformers' slow `Idefics3ImageProcessor`), CLIP / LLaVA-1.5
 * (transformers' slow `CLIPImageProcessor` and `LlavaImageProcessor`, numpy/PIL path) and LLaVA-NeXT (the slow
 * `LlavaNextImageProcessor`). All share decoding, the Pillow-exact resampling and the rescale/normalize arithmetic.
 *
 * This file dispatches by the config's `kind`; the steps live one concern per file: config.ts (the typed
 * `preprocessor_config.json`, overrides), decode.ts (inputs, errors, decoding), resample.ts (Pillow-exact resizing),
 * idefics3.ts, clip.ts and llava-next.ts (one processor each, their pipelines described there), pixel-values.ts (rescale/normalize).
 */
import type { AnyImageProcessorConfig } from './config.ts';
import { checkSize, decode, inputLabel, maxPixelsOf, type ImageInput } from './decode.ts';
import { clipFrame, type SizeCheck } from './clip.ts';
import { idefics3Frames } from './idefics3.ts';
import { llavaNextFrames } from './llava-next.ts';
import { toPixelValues } from './pixel-values.ts';
import { PIXEL_OPS, type ImageOps, type Raster } from './resample.ts';

export {
  loadAnyImageProcessorConfig,
  loadImageProcessorConfig,
  parseAnyImageProcessorConfig,
  parseClipProcessorConfig,
  parseImageProcessorConfig,
  parseLlavaNextProcessorConfig,
  withOverrides,
  type AnyImageProcessorConfig,
  type ClipProcessorConfig,
  type ImageProcessorConfig,
  type ImageProcessorOverrides,
  type LlavaNextProcessorConfig,
} from './config.ts';
export { checkImage, ImageError, type ImageInput } from './decode.ts';
export { patchOutputSize, selectBestResolution } from './llava-next.ts';

/** What a processor made of one image, but its pixels: the tiles' count and size, its grid and original size. */
export interface ImageGeometry {
  tiles: number;
  /** The size of every tile. */
  height: number;
  width: number;
  /**
   * The tile grid: Idefics3's split grid (0, 0 when the image was not split), as Idefics3Processor uses for prompt
   * expansion; LLaVA-NeXT's crop grid, best resolution / crop size (at least 1 × 1); CLIP: 0, 0.
   */
  rows: number;
  cols: number;
  /** The decoded image's size, before any resize (transformers' `image_sizes` entry, [height, width]). */
  originalHeight: number;
  originalWidth: number;
}

export interface PreprocessedImage extends ImageGeometry {
  /**
   * [tiles, 3, height, width] float32, channel-first. Idefics3: the grid tiles in row-major order, the global
   * image last; LLaVA-NeXT: the base image first, then the grid tiles in row-major order; CLIP: one image.
   */
  pixelValues: Float32Array;
}

/**
 * Preprocesses one image the way `cfg` says: Idefics3/SmolVLM (an {@link ImageProcessorConfig}, `kind` absent or
 * 'idefics3'), CLIP/LLaVA (a {@link ClipProcessorConfig}, one image, rows = cols = 0) or LLaVA-NeXT (a
 * {@link LlavaNextProcessorConfig}: base + rows×cols tiles); see each processor's file.
 * `opts.maxPixels` (default 100 megapixels) bounds width×height, checked from the header before decoding (and, for
 * CLIP and LLaVA-NeXT, again for each intermediate image they pad or resize to).
 */
export async function preprocessImage(
  input: ImageInput,
  cfg: AnyImageProcessorConfig,
  opts: { maxPixels?: number } = {},
): Promise<PreprocessedImage> {
  const maxPixels = maxPixelsOf(opts, 'preprocessImage');
  const img = await decode(input, maxPixels);
  const { frames, overWhite, geometry } = processorFrames(img, cfg, sizeCheck(input, maxPixels), PIXEL_OPS);
  return { pixelValues: toPixelValues(frames, cfg, overWhite), ...geometry };
}

/** The check each intermediate size passes (the pixel limit), its errors naming the input. */
export function sizeCheck(input: ImageInput, maxPixels: number): SizeCheck {
  const { label, file } = inputLabel(input);
  return (w, h, what) => checkSize(w, h, maxPixels, `${label} (${what})`, file);
}

/**
 * One processor's resizing and tiling of a decoded image, chosen by `cfg.kind`, with `ops` doing the pixel work:
 * the frames in output order, whether rescaling composites alpha over white (Idefics3's `do_convert_rgb`), and
 * the geometry.
 */
export function processorFrames<I extends Raster>(
  img: I,
  cfg: AnyImageProcessorConfig,
  check: SizeCheck,
  ops: ImageOps<I>,
): { frames: I[]; overWhite: boolean; geometry: ImageGeometry } {
  const original = { originalHeight: img.height, originalWidth: img.width };
  let made: { frames: I[]; rows: number; cols: number };
  let overWhite = false;
  if (cfg.kind === 'clip') made = { frames: [clipFrame(img, cfg, check, ops)], rows: 0, cols: 0 };
  else if (cfg.kind === 'llava_next') made = llavaNextFrames(img, cfg, check, ops);
  else {
    made = idefics3Frames(img, cfg, ops);
    overWhite = cfg.doConvertRgb;
  }
  const { frames, rows, cols } = made;
  return { frames, overWhite, geometry: { tiles: frames.length, height: frames[0].height, width: frames[0].width, rows, cols, ...original } };
}
