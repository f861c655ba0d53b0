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
import { clipFrame } from './clip.ts';
import { idefics3Frames } from './idefics3.ts';
import { llavaNextFrames } from './llava-next.ts';
import { toPixelValues } from './pixel-values.ts';

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

export interface PreprocessedImage {
  /**
   * [tiles, 3, height, width] float32, channel-first. Idefics3: the grid tiles in row-major order, the global
   * image last; LLaVA-NeXT: the base image first, then the grid tiles in row-major order; CLIP: one image.
   */
  pixelValues: Float32Array;
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
  const original = { originalHeight: img.height, originalWidth: img.width };
  const { label, file } = inputLabel(input);
  const check = (w: number, h: number, what: string) => checkSize(w, h, maxPixels, `${label} (${what})`, file);
  if (cfg.kind === 'clip') {
    const frame = clipFrame(img, cfg, check);
    return { pixelValues: toPixelValues([frame], cfg, false), tiles: 1, height: frame.height, width: frame.width, rows: 0, cols: 0, ...original };
  }
  if (cfg.kind === 'llava_next') {
    const { frames, rows, cols } = llavaNextFrames(img, cfg, check);
    const { height, width } = frames[0];
    return { pixelValues: toPixelValues(frames, cfg, false), tiles: frames.length, height, width, rows, cols, ...original };
  }
  const { frames, rows, cols } = idefics3Frames(img, cfg);
  const m = cfg.maxImageSize;
  return { pixelValues: toPixelValues(frames, cfg, cfg.doConvertRgb), tiles: frames.length, height: m, width: m, rows, cols, ...original };
}

