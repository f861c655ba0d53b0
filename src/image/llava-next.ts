/**
 * LLaVA-NeXT image processor ("anyres"): transformers' slow `LlavaNextImageProcessor` (numpy/PIL), which is also
 * what the original LLaVA's `process_anyres_image` computes. Reference values: test/fixtures/llava-next-tiny.
 *
 * LLaVA-NeXT pipeline for one image (H×W = height×width, S = `size.shortest_edge`, P = `crop_size.height`):
 *
 * 1. Decode (decode.ts); `do_convert_rgb` drops alpha first, as CLIP's step 2 (clip.ts).
 * 2. `select_best_resolution` over `image_grid_pinpoints` ([h, w] pairs): scale = min(w/W, h/H),
 *    effective = min(int(W·scale)·int(H·scale), W·H), wasted = h·w − effective; the largest effective wins, ties go
 *    to the least wasted, then to the first in list order.
 * 3. `get_patch_output_size`: resize keeping the aspect ratio to fit the chosen h×w: scale_w = w/W, scale_h = h/H;
 *    if scale_w < scale_h: W' = w, H' = min(ceil(H·scale_w), h), else H' = h, W' = min(ceil(W·scale_h), w).
 *    PIL `resize` with `resample`, whatever `do_resize` says (it only governs step 6).
 * 4. Pad with zeros (level 0, before rescaling) to h×w, centred: `divmod(h − H', 2)` rows on top and the quotient
 *    plus the remainder at the bottom, the same for the columns.
 * 5. Tiles: the padded image cut into P×P squares in row-major order, rows = h / P, cols = w / P, PRECEDED by the
 *    whole image (step 1's, not the padded one) resized to S×S, the aspect ratio not kept (`{"height", "width"}`
 *    sizes: min(height, width) squared). Output order [base, r0c0, r0c1, …].
 * 6. Each tile through CLIP's `do_resize` and `do_center_crop` (clip.ts, steps 4 and 5; identities when the tile is
 *    already crop-sized, as with the published configs), then rescale/normalize (pixel-values.ts).
 *    Output [1 + rows·cols, 3, ch, cw].
 *
 * `do_pad` pads the tile dimension of a batch with zero tiles (transformers' `_pad_for_batching`): a no-op for one
 * image. "…Fast" configs get these (PIL) pixels; transformers' torchvision path resizes differently (the fixture's
 * README measures up to 15 levels).
 */
import type { LlavaNextProcessorConfig } from './config.ts';
import { clipResizeCrop, type SizeCheck } from './clip.ts';
import type { ImageOps, Raster } from './resample.ts';

// ---------------------------------------------------------------------------------------------------------------
// LLaVA-NeXT geometry

/**
 * transformers' `select_best_resolution`: the [height, width] of `pinpoints` that keeps the most of an H×W image's
 * resolution once it is scaled to fit, then wastes the least; the first in list order on a full tie. `pinpoints`
 * must not be empty.
 */
export function selectBestResolution(height: number, width: number, pinpoints: readonly (readonly [number, number])[]): [number, number] {
  if (pinpoints.length === 0) throw new RangeError('selectBestResolution: no pinpoints');
  let best = pinpoints[0];
  let maxEffective = 0;
  let minWasted = Infinity;
  for (const p of pinpoints) {
    const [h, w] = p;
    const scale = Math.min(w / width, h / height);
    const effective = Math.min(Math.trunc(width * scale) * Math.trunc(height * scale), width * height);
    const wasted = h * w - effective;
    if (effective > maxEffective || (effective === maxEffective && wasted < minWasted)) {
      maxEffective = effective;
      minWasted = wasted;
      best = p;
    }
  }
  return [best[0], best[1]];
}

/**
 * transformers' `get_patch_output_size`: the [height, width] an H×W image is resized to so that it fits
 * `target` ([height, width]) with its aspect ratio kept, one side equal to the target's.
 */
export function patchOutputSize(height: number, width: number, target: readonly [number, number]): [number, number] {
  const [th, tw] = target;
  const scaleW = tw / width;
  const scaleH = th / height;
  if (scaleW < scaleH) return [Math.min(Math.ceil(height * scaleW), th), tw];
  return [th, Math.min(Math.ceil(width * scaleH), tw)];
}

// ---------------------------------------------------------------------------------------------------------------
// The processor

/**
 * LLaVA-NeXT: the tiles in output order (base first), before rescaling, and the crop grid (see the module comment).
 * `check(w, h, what)` is called on each size an intermediate image is about to take; `ops` does the pixel work.
 */
export function llavaNextFrames<I extends Raster>(
  img: I,
  cfg: LlavaNextProcessorConfig,
  check: SizeCheck,
  ops: ImageOps<I>,
): { frames: I[]; rows: number; cols: number } {
  img = ops.dropAlpha(img);
  const [bh, bw] = selectBestResolution(img.height, img.width, cfg.imageGridPinpoints);
  const [nh, nw] = patchOutputSize(img.height, img.width, [bh, bw]);
  check(bw, bh, `padded to the grid resolution ${bh}×${bw}`);
  // _pad_for_patching: divmod(target - new, 2), the odd line at the bottom/right; zeros reach past the image.
  const grid = ops.extract(ops.resize(img, nw, nh, cfg.resample), -Math.floor((bw - nw) / 2), -Math.floor((bh - nh) / 2), bw, bh);

  // divide_to_patches: squares of crop_size.height in both directions (the config holds pinpoints to its multiples).
  const p = cfg.cropSize.height;
  const rows = bh / p;
  const cols = bw / p;
  const s = 'shortestEdge' in cfg.size ? cfg.size.shortestEdge : Math.min(cfg.size.height, cfg.size.width);
  check(s, s, 'resized as the base tile');
  const tiles = [ops.resize(img, s, s, cfg.resample)];
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) tiles.push(ops.extract(grid, c * p, r * p, p, p));
  return { frames: tiles.map((t) => clipResizeCrop(t, cfg, check, ops)), rows, cols };
}
