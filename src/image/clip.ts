/**
 * CLIP / LLaVA-1.5 image processor: transformers' slow `CLIPImageProcessor` and `LlavaImageProcessor` (numpy/PIL).
 *
 * CLIP / LLaVA-1.5 pipeline for one image (`CLIPImageProcessor.preprocess`; `LlavaImageProcessor` adds step 3):
 *
 * 1. Decode (decode.ts).
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
 * 6. `do_rescale` / `do_normalize` as Idefics3's step 5 (pixel-values.ts). Output [1, 3, ch, cw] (the resized size without a crop),
 *    rows = cols = 0.
 * "…Fast" configs are read the same way and get these (slow-path) pixels; the fast processors resize with
 * torchvision, which can differ from PIL by a few levels. llava-hf's LLaVA-1.5 checkpoints ship a `CLIPImageProcessor`
 * config (resize + centre crop, no pad); original LLaVA-1.5 padded to square first, which is what an
 * `LlavaImageProcessor` config with `"do_pad": true` reproduces.
 */
import type { ClipProcessorConfig } from './config.ts';
import type { ImageOps, Raster } from './resample.ts';

// ---------------------------------------------------------------------------------------------------------------
// CLIP geometry

/**
 * `CLIPImageProcessor.resize` → `get_resize_output_image_size(default_to_square=False)` for `{shortest_edge: s}`:
 * the short side becomes s, the long side int(s · long / short) (truncated); `{height, width}` is taken as is.
 * Returns [height, width].
 */
export function clipResizeSize(height: number, width: number, size: ClipProcessorConfig['size']): [number, number] {
  if (!('shortestEdge' in size)) return [size.height, size.width];
  const s = size.shortestEdge;
  if (width <= height) return [Math.trunc((s * height) / width), s];
  return [s, Math.trunc((s * width) / height)];
}

/**
 * CLIP/LLaVA: convert to RGB, pad to square, resize, centre-crop (see the module comment). `check(w, h, what)` is
 * called on each size an intermediate image is about to take; `ops` does the pixel work.
 */
export function clipFrame<I extends Raster>(img: I, cfg: ClipProcessorConfig, check: SizeCheck, ops: ImageOps<I>): I {
  // convert_to_rgb is PIL convert("RGB"): alpha dropped, before anything else. Without do_convert_rgb
  // transformers would fail to normalise 4 channels; the alpha channel is dropped all the same.
  img = ops.dropAlpha(img);
  if (cfg.doPad && img.width !== img.height) {
    // LlavaImageProcessor.pad_to_square: background int(x * 255) per channel, image centred at (max - side) // 2.
    const s = Math.max(img.width, img.height);
    check(s, s, 'padded to square');
    const bg = cfg.imageMean.map((x) => Math.trunc(x * 255));
    img = ops.extract(img, -Math.floor((s - img.width) / 2), -Math.floor((s - img.height) / 2), s, s, bg);
  }
  return clipResizeCrop(img, cfg, check, ops);
}

/** Called with each size an intermediate image is about to take (it throws an ImageError past the pixel limit). */
export type SizeCheck = (w: number, h: number, what: string) => void;

/** Steps 4 and 5, `do_resize` and `do_center_crop`, which LLaVA-NeXT applies to each of its tiles. */
export function clipResizeCrop<I extends Raster>(
  img: I,
  cfg: Pick<ClipProcessorConfig, 'doResize' | 'size' | 'resample' | 'doCenterCrop' | 'cropSize'>,
  check: SizeCheck,
  ops: ImageOps<I>,
): I {
  if (cfg.doResize) {
    const [h, w] = clipResizeSize(img.height, img.width, cfg.size);
    check(w, h, 'resized');
    img = ops.resize(img, w, h, cfg.resample);
  }
  if (cfg.doCenterCrop) {
    // center_crop: top = (H - ch) // 2, left = (W - cw) // 2; where the crop is larger it zero-pads, placing the
    // image at ceil((ch - H) / 2) = -((H - ch) // 2): the same window, reaching past the image.
    const { height: ch, width: cw } = cfg.cropSize;
    if (ch !== img.height || cw !== img.width) {
      img = ops.extract(img, Math.floor((img.width - cw) / 2), Math.floor((img.height - ch) / 2), cw, ch);
    }
  }
  return img;
}
