// Idefics3 / SmolVLM image placeholder expansion: each `<image>` of a rendered chat prompt becomes
// the token block the model was trained on, built the way transformers' Idefics3Processor
// (get_image_prompt_string) builds it:
//
//   not split (rows = cols = 0):
//     <fake_token_around_image><global-img>{<image> × seqLen}<fake_token_around_image>
//
//   split into rows × cols tiles: for each row R = 1..rows, for each column C = 1..cols,
//     <fake_token_around_image><row_R_col_C>{<image> × seqLen}
//   with "\n" after each row's last tile; then
//     "\n"<fake_token_around_image><global-img>{<image> × seqLen}<fake_token_around_image>
//   (so the last row is followed by "\n\n" before the global block, and tiles have no closing
//   fake token: the next tile's opening one separates them).
import { ModelDir } from '../io/model-dir.ts';

export interface ImageTokens {
  /** Placeholder written by the chat template and repeated imageSeqLen times per (sub-)image. */
  image: string;
  /** Wraps each image block (`<fake_token_around_image>`). */
  fakeAround: string;
  /** Marks the global (downscaled whole) image block (`<global-img>`). */
  globalImg: string;
}

export const DEFAULT_IMAGE_TOKENS: Readonly<ImageTokens> = Object.freeze({
  image: '<image>',
  fakeAround: '<fake_token_around_image>',
  globalImg: '<global-img>',
});

export interface ImageGrid {
  rows: number;
  cols: number;
}

/** A token given as a string or as a serialised AddedToken `{content: ...}`. */
function tokenString(value: unknown): string | undefined {
  if (typeof value === 'string' && value.length > 0) return value;
  if (value !== null && typeof value === 'object') {
    const content = (value as { content?: unknown }).content;
    if (typeof content === 'string' && content.length > 0) return content;
  }
  return undefined;
}

/**
 * The image tokens of a model directory. transformers' Idefics3Processor hard-codes the three
 * defaults; SmolVLMProcessor takes the tokenizer's `image_token`, `fake_image_token` and
 * `global_image_token` attributes when present, which come from these tokenizer_config.json keys.
 * A missing tokenizer_config.json or missing key gives the default.
 */
export function imageTokensOf(md: ModelDir): ImageTokens {
  const config = md.json('tokenizer_config.json') ?? {};
  return {
    image: tokenString(config['image_token']) ?? DEFAULT_IMAGE_TOKENS.image,
    fakeAround: tokenString(config['fake_image_token']) ?? DEFAULT_IMAGE_TOKENS.fakeAround,
    globalImg: tokenString(config['global_image_token']) ?? DEFAULT_IMAGE_TOKENS.globalImg,
  };
}

/** imageTokensOf() for a directory not opened yet. */
export async function loadImageTokens(dir: string): Promise<ImageTokens> {
  return imageTokensOf(await ModelDir.open(dir, ['tokenizer_config.json']));
}

/** `image_seq_len` of `processor_config.json`: the number of `<image>` tokens per (sub-)image. */
export function imageSeqLenOf(md: ModelDir): number {
  const file = md.path('processor_config.json');
  const config = md.required('processor_config.json');
  const v = config['image_seq_len'];
  if (v === undefined) throw new Error(`${file}: no "image_seq_len" key`);
  if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) {
    throw new Error(`${file}: "image_seq_len" must be a positive integer, got ${JSON.stringify(v)}`);
  }
  return v;
}

/** imageSeqLenOf() for a directory not opened yet. */
export async function loadImageSeqLen(dir: string): Promise<number> {
  return imageSeqLenOf(await ModelDir.open(dir, ['processor_config.json']));
}

function checkCount(what: string, v: number): void {
  if (!Number.isInteger(v) || v < 0) throw new Error(`${what} must be a non-negative integer, got ${v}`);
}

/** The text block that replaces one `<image>` placeholder for an image split into `grid`. */
export function imagePromptString(grid: ImageGrid, imageSeqLen: number, tokens: ImageTokens = DEFAULT_IMAGE_TOKENS): string {
  checkCount('rows', grid.rows);
  checkCount('cols', grid.cols);
  if (!Number.isInteger(imageSeqLen) || imageSeqLen <= 0) {
    throw new Error(`imageSeqLen must be a positive integer, got ${imageSeqLen}`);
  }
  const run = tokens.image.repeat(imageSeqLen);
  const globalBlock = tokens.fakeAround + tokens.globalImg + run + tokens.fakeAround;
  // Only rows = cols = 0 is the unsplit case; any other grid takes the tiled form.
  if (grid.rows === 0 && grid.cols === 0) return globalBlock;
  let out = '';
  for (let r = 1; r <= grid.rows; r++) {
    for (let c = 1; c <= grid.cols; c++) out += `${tokens.fakeAround}<row_${r}_col_${c}>${run}`;
    out += '\n';
  }
  return out + '\n' + globalBlock;
}

/**
 * Replaces the i-th image placeholder of `text` by the block of the i-th image (`grids[i]`).
 * Throws when the number of placeholders differs from the number of images.
 */
export function expandImages(
  text: string,
  grids: ImageGrid[],
  imageSeqLen: number,
  tokens: ImageTokens = DEFAULT_IMAGE_TOKENS,
): string {
  return replacePlaceholders(text, tokens.image, grids.length, (i) => imagePromptString(grids[i]!, imageSeqLen, tokens));
}

/**
 * Replaces the i-th `image` placeholder of `text` by block(i). Throws when the number of placeholders
 * differs from `images`. (LLaVA's processor repeats the image token once per feature.)
 */
export function replacePlaceholders(text: string, image: string, images: number, block: (i: number) => string): string {
  if (image.length === 0) throw new Error('the image token must not be empty');
  const parts = text.split(image);
  const placeholders = parts.length - 1;
  if (placeholders !== images) {
    throw new Error(`the prompt has ${placeholders} ${image} placeholder(s) but ${images} image(s) were given; they must match`);
  }
  let out = parts[0]!;
  for (let i = 0; i < images; i++) out += block(i) + parts[i + 1]!;
  return out;
}
