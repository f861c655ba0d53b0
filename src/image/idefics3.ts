/**
 * Idefics3 / SmolVLM image processor: the semantics of transformers' slow `Idefics3ImageProcessor`.
 *
 * Idefics3 pipeline for one image (H×W = height×width, L = `size.longest_edge`, M = `max_image_size.longest_edge`):
 *
 * 1. Decode (decode.ts), alpha kept.
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
 */
import { MAX_EDGE, type ImageProcessorConfig } from './config.ts';
import type { ImageOps, Raster } from './resample.ts';

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
// The processor

/**
 * Idefics3 resizing and splitting: the M×M frames in output order, and the split grid. `ops` does the pixel work
 * (host pixels or device frames: the same geometry either way).
 */
export function idefics3Frames<I extends Raster>(img: I, cfg: ImageProcessorConfig, ops: ImageOps<I>): { frames: I[]; rows: number; cols: number } {
  const m = cfg.maxImageSize;
  const rs = cfg.resample;

  if (cfg.doResize) {
    const [h, w] = longestEdgeSize(img.height, img.width, cfg.longestEdge);
    img = ops.resize(img, w, h, rs);
  }

  if (!cfg.doImageSplitting) return { frames: [ops.resize(img, m, m, rs)], rows: 0, cols: 0 };
  const [h, w] = visionEncoderSize(img.height, img.width, m);
  img = ops.resize(img, w, h, rs);
  if (!(h > m || w > m)) return { frames: [img], rows: 0, cols: 0 };
  const rows = Math.ceil(h / m);
  const cols = Math.ceil(w / m);
  const frames: I[] = [];
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) frames.push(ops.extract(img, c * m, r * m, m, m));
  frames.push(ops.resize(img, m, m, rs));
  return { frames, rows, cols };
}
