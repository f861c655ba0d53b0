// A model family, in one place: the config.json model_type it answers to, how its model loads, and how
// a rendered chat's image placeholders expand for its images. Each model file exports its family; the
// registry (registry.ts) lists them. Adding a family is its model file with its descriptor, and a line
// in the registry.
import type { Gpu } from '../gpu/device.ts';
import type { ModelDir } from '../io/model-dir.ts';
import type { ImageGeometry } from '../image/preprocess.ts';
import type { ImageLayout, VisionLanguageModel } from './vlm.ts';
import type { ModelLoadOptions } from './weights.ts';
import { imageTokensOf, replacePlaceholders } from '../text/prompt.ts';

export interface ModelFamily {
  /** config.json `model_type`. */
  readonly modelType: string;
  /** The models and the transformers class, for messages and the README. */
  readonly name: string;
  load(gpu: Gpu, dir: string, opts: ModelLoadOptions): Promise<VisionLanguageModel>;
  /**
   * How the placeholders of a rendered chat expand for these images, as the family's processor does:
   * read from the directory (and checked against the model) once, at load.
   */
  prompt(md: ModelDir, model: VisionLanguageModel): (chat: string, images: readonly ImageGeometry[]) => string;
}

/** The layout the model packs an image's features by, from what its processor made. */
export function imageLayout(p: ImageGeometry): ImageLayout {
  return { tiles: p.tiles, rows: p.rows, cols: p.cols, height: p.originalHeight, width: p.originalWidth };
}

/** LLaVA's processors: the image token repeated once per feature the model gives the image. */
export function repeatPerFeature(md: ModelDir, model: VisionLanguageModel): (chat: string, images: readonly ImageGeometry[]) => string {
  const image = imageTokensOf(md).image;
  return (chat, images) => replacePlaceholders(chat, image, images.length, (i) => image.repeat(model.placeholders(imageLayout(images[i]))));
}
