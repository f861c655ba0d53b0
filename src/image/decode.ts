/**
 * Image inputs and decoding: file paths, encoded bytes or raw RGB(A) pixels become 8-bit RGB or RGBA, after the
 * checks that need no decoding (existence, header, the pixel limit). Every processor starts here.
 *
 * Decode with sharp: first frame of animated images, EXIF orientation applied (what transformers'
 * `load_image` does with `ImageOps.exif_transpose`), embedded ICC profiles ignored (PIL ignores them too),
 * 16-bit samples reduced to their high byte (as PIL's "RGB;16B" unpacking does), grayscale replicated to RGB,
 * CMYK converted with PIL's formula `R = (255-K) - (255-K)·C/255` (rounded the PIL way), alpha kept.
 */
import * as fsp from 'node:fs/promises';
import sharp from 'sharp';
import type { Metadata, SharpOptions } from 'sharp';
import { describe } from './config.ts';
import { mulDiv255 } from './resample.ts';

// ---------------------------------------------------------------------------------------------------------------
// Inputs and errors

export type ImageInput =
  | string /* file path */
  | Buffer
  | Uint8Array
  | { data: Uint8Array; width: number; height: number; channels: 3 | 4 } /* raw RGB(A), row-major, straight alpha */;

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
export interface Pixels {
  data: Uint8Array;
  width: number;
  height: number;
  channels: 3 | 4;
}

function errText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** How messages name an input, and its path when it is a file. */
export function inputLabel(input: ImageInput): { label: string; file?: string } {
  if (typeof input === 'string') return { label: input, file: input };
  if (input instanceof Uint8Array) return { label: `image data (${input.length} bytes)` };
  return { label: 'raw image' };
}

export function checkSize(width: number, height: number, maxPixels: number, label: string, file: string | undefined): void {
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

export function maxPixelsOf(opts: { maxPixels?: number }, caller: string): number {
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

export async function decode(input: ImageInput, maxPixels: number): Promise<Pixels> {
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
