/**
 * Image preprocessing for two processor families, configured by a model directory's `preprocessor_config.json`:
 * Idefics3 / SmolVLM (the semantics of transformers' slow `Idefics3ImageProcessor`) and CLIP / LLaVA-1.5
 * (transformers' slow `CLIPImageProcessor` and `LlavaImageProcessor`, numpy/PIL path). Both share decoding, the
 * Pillow-exact resampling and the rescale/normalize arithmetic.
 *
 * This file dispatches by the config's `kind`; the steps live one concern per file: config.ts (the typed
 * `preprocessor_config.json`, overrides), decode.ts (inputs, errors, decoding), resample.ts (Pillow-exact resizing),
 * idefics3.ts and clip.ts (one processor each, their pipelines described there), pixel-values.ts (rescale/normalize).
 */
import type { AnyImageProcessorConfig } from './config.ts';
import { checkSize, decode, inputLabel, maxPixelsOf, type ImageInput } from './decode.ts';
import { clipFrame } from './clip.ts';
import { idefics3Frames } from './idefics3.ts';
import { toPixelValues } from './pixel-values.ts';

export {
  loadAnyImageProcessorConfig,
  loadImageProcessorConfig,
  parseAnyImageProcessorConfig,
  parseClipProcessorConfig,
  parseImageProcessorConfig,
  withOverrides,
  type AnyImageProcessorConfig,
  type ClipProcessorConfig,
  type ImageProcessorConfig,
  type ImageProcessorOverrides,
} from './config.ts';
export { checkImage, ImageError, type ImageInput } from './decode.ts';

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

