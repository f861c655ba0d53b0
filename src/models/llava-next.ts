// LLaVA-NeXT (transformers LlavaNextForConditionalGeneration): LLaVA's CLIP tower and GELU projector run
// on every crop of an "anyres" image (a base image squashed to one crop, then the image resized and
// padded to one of image_grid_pinpoints and cut into crops); the features are then packed per image:
// the base crop's, then the crops' patch maps stitched back into the padded image's layout, un-padded to
// the original aspect ratio, with image_newline after each row; then the Llama or Mistral decoder. The
// packing is the embedding gather's row map (NEWLINE_ROW for the newline): no kernel of its own.
// Both llava-hf layouts load (current names, and the older ones of the published v1.6 checkpoints).
import type { Gpu } from '../gpu/device.ts';
import type { Graph } from '../graph/graph.ts';
import type { Tensor } from '../graph/tensor.ts';
import { parseLlavaNextConfig, type LlavaNextConfig } from './config.ts';
import { Llava, LAYOUTS, detectLayout, type LlavaLayout } from './llava.ts';
import { Taps } from './taps.ts';
import { VarBuilder, type WeightStore, type ModelLoadOptions } from './weights.ts';
import { loadCheckpointModel, type DerivedTaps, type ImageLayout } from './vlm.ts';
import { NEWLINE_ROW } from '../ops/embedding.ts';
import { selectBestResolution } from '../image/preprocess.ts';
import { repeatPerFeature, type ModelFamily } from './family.ts';

/** Python's int(round(x, 7)): rounding at 7 decimals first keeps 9.99999999 from truncating to 9. */
const intRound7 = (x: number) => Math.trunc(Math.round(x * 1e7) / 1e7);

/**
 * Which part of an image's grid patch map ((rows·side) × (cols·side) patches) survives un-padding to its
 * original height × width (transformers' unpad_image): rows [y0, y1) × columns [x0, x1).
 */
export function unpaddedGrid(height: number, width: number, rows: number, cols: number, side: number): { y0: number; y1: number; x0: number; x1: number } {
  const [ch, cw] = [rows * side, cols * side];
  if (width / height > cw / ch) {
    const pad = Math.floor((ch - intRound7(height * (cw / width))) / 2);
    return { y0: pad, y1: ch - pad, x0: 0, x1: cw };
  }
  const pad = Math.floor((cw - intRound7(width * (ch / height))) / 2);
  return { y0: 0, y1: ch, x0: pad, x1: cw - pad };
}

/**
 * `<image>` tokens one image takes: the base crop's side² features, then each un-padded grid row and its
 * newline (= LlavaNextProcessor._get_number_of_features).
 */
export function anyresFeatures(height: number, width: number, rows: number, cols: number, side: number): number {
  const g = unpaddedGrid(height, width, rows, cols, side);
  return side * side + (g.y1 - g.y0) * (g.x1 - g.x0 + 1);
}

export class LlavaNext extends Llava {
  readonly image_newline: Tensor; // [D_text], read as f32 by the embedding gather
  /** Patches along one side of a crop. */
  readonly side: number;

  private constructor(gpu: Gpu, store: WeightStore, override readonly config: LlavaNextConfig, layout: LlavaLayout) {
    super(gpu, store, config, layout);
    const vb = new VarBuilder(store);
    this.image_newline = vb.get(LAYOUTS[layout].newline, [config.text_config.hidden_size], { f32: true });
    this.side = config.vision_config.image_size / config.vision_config.patch_size;
  }

  static override load(gpu: Gpu, dir: string, opts: ModelLoadOptions = {}): Promise<LlavaNext> {
    return loadCheckpointModel(gpu, dir, opts, parseLlavaNextConfig, (store, config, ckpt) => new LlavaNext(gpu, store, config, detectLayout(ckpt.tensors.keys())));
  }

  override get imageNewline(): Tensor {
    return this.image_newline;
  }

  /** The crops of an image of height × width: the grid of the best pinpoint resolution, plus the base crop. */
  override imageLayout(height: number, width: number): ImageLayout {
    const S = this.config.vision_config.image_size;
    const [h, w] = selectBestResolution(height, width, this.config.image_grid_pinpoints);
    const [rows, cols] = [h / S, w / S];
    return { tiles: 1 + rows * cols, rows, cols, height, width };
  }

  /** Checks that an image's crops are the base one plus its grid. */
  private checkLayout(im: ImageLayout): void {
    if (!(im.rows > 0 && im.cols > 0 && im.tiles === 1 + im.rows * im.cols && im.height > 0 && im.width > 0)) {
      throw new Error(
        `LLaVA-NeXT packs each image by its crop grid and original size (image_sizes): got ${im.tiles} tile(s), grid ${im.rows}×${im.cols}, ` +
          `size ${im.height}×${im.width}; give the images as the LLaVA-NeXT processor makes them (1 base crop + rows × cols crops)`,
      );
    }
  }

  override placeholders(im: ImageLayout): number {
    this.checkLayout(im);
    return anyresFeatures(im.height, im.width, im.rows, im.cols, this.side);
  }

  /**
   * Per image (its crops consecutive: base, then the grid row-major): the base crop's patch rows, then the
   * grid's patch map un-padded, row by row, each row followed by the newline. Rows index encodeImages()'
   * output, which keeps each crop's CLS row first (skipped here, as "default" selection drops it).
   */
  protected override packedRows(images: readonly ImageLayout[]): number[] {
    const s = this.side;
    const per = s * s + 1; // rows per crop, CLS first
    const out: number[] = [];
    let t0 = 0;
    for (const im of images) {
      this.checkLayout(im);
      for (let p = 0; p < s * s; p++) out.push(t0 * per + 1 + p);
      const g = unpaddedGrid(im.height, im.width, im.rows, im.cols, s);
      for (let y = g.y0; y < g.y1; y++) {
        for (let x = g.x0; x < g.x1; x++) {
          const crop = t0 + 1 + Math.floor(y / s) * im.cols + Math.floor(x / s);
          out.push(crop * per + 1 + (y % s) * s + (x % s));
        }
        out.push(NEWLINE_ROW);
      }
      t0 += im.tiles;
    }
    return out;
  }

  /** The tower and the projector on every crop, CLS rows included (the packing skips them). */
  override encodeImages(g: Graph, pixels: Tensor, taps: Taps): Tensor {
    const hidden = taps.tap(g, 'vision_hidden_crops', this.vision_tower.forward(g, pixels, taps));
    return taps.tap(g, 'projector_out_crops', this.multi_modal_projector.forward(g, hidden));
  }

  /**
   * The reference's per-crop features (CLS dropped) and the packed features, read on the host out of the
   * full crop rows and out of inputs_embeds at the <image> positions.
   */
  protected override derivedTaps(ids: ArrayLike<number>, images: readonly ImageLayout[]): DerivedTaps {
    const s2 = this.side * this.side;
    const tiles = images.reduce((a, im) => a + im.tiles, 0);
    const patchRows = Array.from({ length: tiles * s2 }, (_, k) => Math.floor(k / s2) * (s2 + 1) + 1 + (k % s2));
    const imagePositions = Array.from(ids).flatMap((id, t) => (id === this.imageTokenId ? [t] : []));
    const [Dv, Dt] = [this.config.vision_config.hidden_size, this.config.text_config.hidden_size];
    return new Map([
      ['vision_hidden', { from: 'vision_hidden_crops', rows: patchRows, width: Dv }],
      ['projector_out', { from: 'projector_out_crops', rows: patchRows, width: Dt }],
      ['image_features_packed', { from: 'inputs_embeds', rows: imagePositions, width: Dt }],
    ]);
  }
}

/** LLaVA-NeXT: anyres crops, the image token once per packed feature (the count depends on the image). */
export const llavaNextFamily: ModelFamily = {
  modelType: 'llava_next',
  name: 'LLaVA-NeXT (LlavaNextForConditionalGeneration), Mistral or Vicuna decoder',
  load: (gpu, dir, opts) => LlavaNext.load(gpu, dir, opts),
  prompt: repeatPerFeature,
};
