// Idefics3 / SmolVLM image preprocessing: exactness against third-party references (the nanoVLM fixture and
// transformers' Idefics3ImageProcessor outputs in test/fixtures/images), the split grid with the real SmolVLM
// config, colour/format handling, and input errors.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as nodePath from 'node:path';
import { deflateSync } from 'node:zlib';
import sharp from 'sharp';
import {
  checkImage,
  ImageError,
  loadImageProcessorConfig,
  parseImageProcessorConfig,
  preprocessImage,
  type ImageProcessorConfig,
  type PreprocessedImage,
} from '../../src/image/preprocess.ts';
import { SafetensorsFile } from '../../src/io/safetensors.ts';
import { toFloat32 } from '../../src/io/decode.ts';

const FIX = nodePath.join(import.meta.dirname, '..', 'fixtures');
const TINY = nodePath.join(FIX, 'smolvlm-tiny');
const IMAGES = nodePath.join(FIX, 'images');
const SMOLVLM = nodePath.join(FIX, 'hf', 'SmolVLM-256M-Instruct');

/** A config with no resizing or splitting surprises: the image must already be `size`×`size`. */
function identityConfig(size: number, over: Partial<ImageProcessorConfig> = {}): ImageProcessorConfig {
  return {
    doConvertRgb: true,
    doResize: false,
    longestEdge: size,
    doImageSplitting: false,
    maxImageSize: size,
    resample: 1,
    doRescale: true,
    rescaleFactor: 1 / 255,
    doNormalize: true,
    imageMean: [0.5, 0.5, 0.5],
    imageStd: [0.5, 0.5, 0.5],
    ...over,
  };
}

/** The uint8 level a pixel had before rescale and normalize (mean = std = 0.5). */
function level(p: PreprocessedImage, tile: number, c: number, y: number, x: number): number {
  const v = p.pixelValues[((tile * 3 + c) * p.height + y) * p.width + x];
  return Math.round((v * 0.5 + 0.5) * 255);
}
function rgbAt(p: PreprocessedImage, tile: number, y: number, x: number): number[] {
  return [0, 1, 2].map((c) => level(p, tile, c, y, x));
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  assert.equal(a.length, b.length, 'length');
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

async function readTensor(path: string, name: string): Promise<{ data: Float32Array; shape: number[]; meta: Record<string, string> }> {
  const f = await SafetensorsFile.open(path);
  try {
    const info = f.tensors.get(name)!;
    return { data: toFloat32(info, await f.read(name)), shape: info.shape, meta: f.metadata };
  } finally {
    await f.close();
  }
}

// ---- tiny PNG writer (for 16-bit samples and forged headers, which sharp cannot write) ----
const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();
function crc32(b: Uint8Array): number {
  let c = 0xffffffff;
  for (const x of b) c = CRC_TABLE[(c ^ x) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}
function pngChunk(type: string, data: Uint8Array): Buffer {
  const td = Buffer.concat([Buffer.from(type, 'latin1'), data]);
  const out = Buffer.alloc(12 + data.length);
  out.writeUInt32BE(data.length, 0);
  td.copy(out, 4);
  out.writeUInt32BE(crc32(td), 8 + data.length);
  return out;
}
/** PNG with the given IHDR fields and `rows` as unfiltered scanlines (fewer than `height` makes a short file). */
function makePng(width: number, height: number, bitDepth: number, colourType: number, rows: Buffer[]): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = bitDepth;
  ihdr[9] = colourType;
  const parts = [Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]), pngChunk('IHDR', ihdr)];
  parts.push(pngChunk('IDAT', deflateSync(Buffer.concat(rows.map((r) => Buffer.concat([Buffer.from([0]), r]))))));
  parts.push(pngChunk('IEND', new Uint8Array(0)));
  return Buffer.concat(parts);
}

async function tmpDir(): Promise<string> {
  return fsp.mkdtemp(nodePath.join(os.tmpdir(), 'preprocess-test-'));
}

// ------------------------------------------------------------------------------------------------------------
// 1. Exactness against third-party references

test('reproduces the nanoVLM fixture pixel_values [1,3,64,64] (README §3)', async () => {
  const cfg = await loadImageProcessorConfig(TINY);
  assert.equal(cfg.doImageSplitting, false);
  assert.equal(cfg.maxImageSize, 64);
  const ref = await readTensor(nodePath.join(TINY, 'reference.safetensors'), 'pixel_values');
  assert.deepEqual(ref.shape, [1, 3, 64, 64]);
  const out = await preprocessImage(nodePath.join(TINY, 'image.png'), cfg);
  assert.deepEqual([out.tiles, out.height, out.width, out.rows, out.cols], [1, 64, 64, 0, 0]);
  const d = maxAbsDiff(out.pixelValues, ref.data);
  assert.ok(d <= 1e-6, `max |diff| ${d}`);
  // README: bitwise equal to f32(x)/127.5 - 1, and our rescale/normalize is the same float32 arithmetic.
  assert.equal(d, 0);
});

for (const name of ['rgba-37x23.lanczos-split', 'rgb-61x45.bicubic-split', 'rgb-61x45.bilinear-nosplit-clipnorm']) {
  test(`matches transformers' Idefics3ImageProcessor output: ${name}`, async () => {
    const ref = await readTensor(nodePath.join(IMAGES, `${name}.safetensors`), 'pixel_values');
    const cfg = parseImageProcessorConfig(JSON.parse(ref.meta.preprocessor_config), `${name}.safetensors`);
    const out = await preprocessImage(nodePath.join(IMAGES, ref.meta.image), cfg);
    assert.deepEqual([out.tiles, 3, out.height, out.width], ref.shape);
    assert.equal(out.rows, Number(ref.meta.rows));
    assert.equal(out.cols, Number(ref.meta.cols));
    const d = maxAbsDiff(out.pixelValues, ref.data);
    assert.ok(d <= 1e-6, `max |diff| ${d}`);
  });
}

test('Buffer, Uint8Array and path inputs give the same result', async () => {
  const cfg = await loadImageProcessorConfig(TINY);
  const path = nodePath.join(TINY, 'image.png');
  const bytes = await fsp.readFile(path);
  const a = await preprocessImage(path, cfg);
  const b = await preprocessImage(bytes, cfg);
  const c = await preprocessImage(new Uint8Array(bytes), cfg);
  assert.deepEqual(b.pixelValues, a.pixelValues);
  assert.deepEqual(c.pixelValues, a.pixelValues);
});

// ------------------------------------------------------------------------------------------------------------
// 2. Split grids with the real SmolVLM-256M config (size.longest_edge 2048, max_image_size 512, LANCZOS)

test('parses the real SmolVLM-256M preprocessor_config.json', async () => {
  const cfg = await loadImageProcessorConfig(SMOLVLM);
  assert.deepEqual(cfg, {
    doConvertRgb: true,
    doResize: true,
    longestEdge: 2048,
    doImageSplitting: true,
    maxImageSize: 512,
    resample: 1,
    doRescale: true,
    rescaleFactor: 0.00392156862745098,
    doNormalize: true,
    imageMean: [0.5, 0.5, 0.5],
    imageStd: [0.5, 0.5, 0.5],
  });
});

/** Raw RGB image whose 4×3 blocks (cols × rows) have distinct flat colours. */
function blockImage(width: number, height: number, bw: number, bh: number): { data: Uint8Array; width: number; height: number; channels: 3 } {
  const data = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const bx = Math.floor(x / bw);
      const by = Math.floor(y / bh);
      data.set([40 + 60 * bx, 40 + 80 * by, 200 - 40 * bx], (y * width + x) * 3);
    }
  }
  return { data, width, height, channels: 3 };
}

test('SmolVLM grid: 1000x600 -> 3 rows x 4 cols + global, row-major, global last', async () => {
  const cfg = await loadImageProcessorConfig(SMOLVLM);
  // do_resize: W >= H, so W = 2048, H = trunc(2048 / (1000/600)) = trunc(1228.8) = 1228 (even) -> 2048x1228.
  // resize_for_vision_encoder: W = ceil(2048/512)*512 = 2048; H = ceil(trunc(2048 / (2048/1228)) / 512)*512
  //   = ceil(1228/512)*512 = 1536 (trunc gives 1227 or 1228; either way 3 tiles) -> 2048x1536.
  // split: rows = 1536/512 = 3, cols = 2048/512 = 4 -> 12 tiles + 1 global = 13 images of 512x512.
  // Blocks of 250x200 source pixels map exactly onto the 512x512 tiles.
  const out = await preprocessImage(blockImage(1000, 600, 250, 200), cfg);
  assert.deepEqual([out.rows, out.cols, out.tiles, out.height, out.width], [3, 4, 13, 512, 512]);
  assert.equal(out.pixelValues.length, 13 * 3 * 512 * 512);
  for (let r = 0; r < 3; r++) {
    for (let c = 0; c < 4; c++) {
      const want = [40 + 60 * c, 40 + 80 * r, 200 - 40 * c];
      assert.deepEqual(rgbAt(out, r * 4 + c, 256, 256), want, `tile r${r} c${c} centre`);
      assert.deepEqual(rgbAt(out, r * 4 + c, 20, 490), want, `tile r${r} c${c} near a corner`);
    }
  }
  // The global image (last) is the whole 2048x1536 picture squeezed to 512x512: block (r, c) covers
  // x in [128c, 128c+128), y in [170.7r, 170.7r+170.7).
  for (let r = 0; r < 3; r++) {
    for (let c = 0; c < 4; c++) {
      assert.deepEqual(rgbAt(out, 12, Math.round(170.7 * r + 85), 128 * c + 64), [40 + 60 * c, 40 + 80 * r, 200 - 40 * c], `global block r${r} c${c}`);
    }
  }
});

test('SmolVLM grid: small and extreme-aspect images', async () => {
  const cfg = await loadImageProcessorConfig(SMOLVLM);
  const grid = async (w: number, h: number) => {
    const o = await preprocessImage(blockImage(w, h, w, h), cfg);
    assert.equal(o.pixelValues.length, o.tiles * 3 * 512 * 512);
    return [o.rows, o.cols, o.tiles, o.height, o.width];
  };
  // 300x200 is upscaled (do_resize always makes the longest edge 2048): H = trunc(2048/1.5) = 1365 -> odd -> 1366;
  // then H = ceil(1366/512)*512 = 1536, W = 2048 -> 3 x 4 + global.
  assert.deepEqual(await grid(300, 200), [3, 4, 13, 512, 512]);
  // 2048x100: W = 2048, H = trunc(2048/20.48) = 100 (or 99 -> odd -> 100); then H = ceil(100/512)*512 = 512
  // -> 1 x 4 + global.
  assert.deepEqual(await grid(2048, 100), [1, 4, 5, 512, 512]);
  // 100x2048 (H > W): H = 2048, W = trunc(2048 * 100/2048) = 100; W -> 512 -> 4 x 1 + global.
  assert.deepEqual(await grid(100, 2048), [4, 1, 5, 512, 512]);
});

test('an image that is exactly one tile is not split: rows = cols = 0, one image', async () => {
  const cfg = { ...(await loadImageProcessorConfig(SMOLVLM)), doResize: false };
  // 400x300 without do_resize: W = ceil(400/512)*512 = 512, H = ceil(trunc(512/(4/3))/512)*512 = ceil(384/512)*512 = 512.
  // 512x512 is not larger than a tile, so split_image returns it alone with 0 rows, 0 cols.
  const one = await preprocessImage(blockImage(400, 300, 400, 300), cfg);
  assert.deepEqual([one.rows, one.cols, one.tiles, one.height, one.width], [0, 0, 1, 512, 512]);
  // Without splitting: the single image squared to max_image_size, rows = cols = 0.
  const noSplit = await preprocessImage(blockImage(1000, 600, 1000, 600), { ...cfg, doImageSplitting: false });
  assert.deepEqual([noSplit.rows, noSplit.cols, noSplit.tiles, noSplit.height, noSplit.width], [0, 0, 1, 512, 512]);
});

// ------------------------------------------------------------------------------------------------------------
// 3. Colour and format handling

test('alpha is composited over white (transparent -> white)', async () => {
  // 2x2 RGBA: opaque red, transparent black, half-transparent red, transparent green.
  const px = Buffer.from([255, 0, 0, 255, 0, 0, 0, 0, 255, 0, 0, 128, 0, 255, 0, 0]);
  const png = await sharp(px, { raw: { width: 2, height: 2, channels: 4 } }).png().toBuffer();
  const out = await preprocessImage(png, identityConfig(2));
  assert.deepEqual(rgbAt(out, 0, 0, 0), [255, 0, 0]);
  assert.deepEqual(rgbAt(out, 0, 0, 1), [255, 255, 255]);
  // PIL alpha_composite onto white: round((v*a + 255*(255-a)) / 255) = [255, 127, 127] for red at a = 128.
  assert.deepEqual(rgbAt(out, 0, 1, 0), [255, 127, 127]);
  assert.deepEqual(rgbAt(out, 0, 1, 1), [255, 255, 255]);
  assert.equal(out.pixelValues[1], 1); // exactly white after normalize
  // Raw RGBA input takes the same path.
  const raw = await preprocessImage({ data: new Uint8Array(px), width: 2, height: 2, channels: 4 }, identityConfig(2));
  assert.deepEqual(raw.pixelValues, out.pixelValues);
});

test('grayscale and grayscale+alpha become RGB', async () => {
  const gray = await sharp(Buffer.from([0, 100, 200, 255]), { raw: { width: 2, height: 2, channels: 1 } }).toColourspace('b-w').png().toBuffer();
  assert.equal((await sharp(gray).metadata()).channels, 1);
  const g = await preprocessImage(gray, identityConfig(2));
  assert.deepEqual([rgbAt(g, 0, 0, 0), rgbAt(g, 0, 0, 1), rgbAt(g, 0, 1, 0), rgbAt(g, 0, 1, 1)], [[0, 0, 0], [100, 100, 100], [200, 200, 200], [255, 255, 255]]);

  const ga = await sharp(Buffer.from([0, 0, 100, 255, 200, 128, 50, 255]), { raw: { width: 2, height: 2, channels: 2 } }).toColourspace('b-w').png().toBuffer();
  assert.equal((await sharp(ga).metadata()).channels, 2);
  const o = await preprocessImage(ga, identityConfig(2));
  // (0, a=0) -> white; (100, 255) -> 100; (200, 128) -> round((200*128 + 255*127)/255) = 227; (50, 255) -> 50.
  assert.deepEqual([rgbAt(o, 0, 0, 0), rgbAt(o, 0, 0, 1), rgbAt(o, 0, 1, 0), rgbAt(o, 0, 1, 1)], [[255, 255, 255], [100, 100, 100], [227, 227, 227], [50, 50, 50]]);
});

test('CMYK JPEG is converted the PIL way (no colour management)', async () => {
  // cmyk-32x8.jpg: an Adobe CMYK JPEG (red, green, blue, grey blocks, 8x8 each). cmyk-32x8.pil-rgb.png holds
  // Pillow 12.3's Image.open(jpg).convert('RGB') of it (the conversion transformers' load_image applies).
  const jpeg = nodePath.join(IMAGES, 'cmyk-32x8.jpg');
  assert.equal((await sharp(jpeg).metadata()).space, 'cmyk');
  const pil = await sharp(nodePath.join(IMAGES, 'cmyk-32x8.pil-rgb.png')).raw().toBuffer({ resolveWithObject: true });
  assert.deepEqual([pil.info.width, pil.info.height, pil.info.channels], [32, 8, 3]);
  // No resize; split into 8x8 tiles: 32x8 stays 32x8, so the 4 tiles are exact crops.
  const out = await preprocessImage(jpeg, identityConfig(8, { doImageSplitting: true }));
  assert.deepEqual([out.rows, out.cols, out.tiles], [1, 4, 5]);
  let maxDiff = 0;
  for (let t = 0; t < 4; t++) {
    for (let y = 0; y < 8; y++) {
      for (let x = 0; x < 8; x++) {
        const got = rgbAt(out, t, y, x);
        for (let c = 0; c < 3; c++) maxDiff = Math.max(maxDiff, Math.abs(got[c] - pil.data[(y * 32 + t * 8 + x) * 3 + c]));
      }
    }
  }
  // Equal today (0); a level of slack for JPEG decoder (IDCT) differences between libvips and Pillow builds.
  // sharp's ICC-managed conversion would be far off (blue block ~ (27, 59, 138) instead of ~ (16, 58, 255)).
  assert.ok(maxDiff <= 1, `max level difference from PIL ${maxDiff}`);
});

test('EXIF orientation 6 is applied', async () => {
  // 4x2: left half red, right half blue. Orientation 6 = rotate 90° clockwise for display, giving 2x4 with
  // red on top. Nearest resampling to 4x4 keeps the halves crisp.
  const px = new Uint8Array(4 * 2 * 3);
  for (let y = 0; y < 2; y++) for (let x = 0; x < 4; x++) px.set(x < 2 ? [255, 0, 0] : [0, 0, 255], (y * 4 + x) * 3);
  const src = sharp(px, { raw: { width: 4, height: 2, channels: 3 } });
  const rotated = await src.clone().withMetadata({ orientation: 6 }).png().toBuffer();
  assert.equal((await sharp(rotated).metadata()).orientation, 6);
  const cfg = identityConfig(4, { resample: 0 });
  const o = await preprocessImage(rotated, cfg);
  assert.deepEqual([rgbAt(o, 0, 0, 0), rgbAt(o, 0, 0, 3), rgbAt(o, 0, 3, 0), rgbAt(o, 0, 3, 3)], [[255, 0, 0], [255, 0, 0], [0, 0, 255], [0, 0, 255]]);
  const plain = await preprocessImage(await src.clone().png().toBuffer(), cfg);
  assert.deepEqual([rgbAt(plain, 0, 0, 0), rgbAt(plain, 0, 0, 3)], [[255, 0, 0], [0, 0, 255]]);
});

test('16-bit PNG: the high byte of each sample (as PIL reads RGB;16B)', async () => {
  const row = Buffer.alloc(2 * 3 * 2);
  [0x80ff, 0x1200, 0xffff, 0x00ff, 0x7f80, 0x0101].forEach((v, i) => row.writeUInt16BE(v, i * 2));
  const png = makePng(2, 1, 16, 2, [row]);
  assert.equal((await sharp(png).metadata()).depth, 'ushort');
  const o = await preprocessImage(png, identityConfig(2, { resample: 0 })); // 2x1 -> 2x2 by row duplication
  assert.deepEqual([rgbAt(o, 0, 0, 0), rgbAt(o, 0, 0, 1), rgbAt(o, 0, 1, 1)], [[0x80, 0x12, 0xff], [0x00, 0x7f, 0x01], [0x00, 0x7f, 0x01]]);
});

test('raw RGB input: rescale and normalize exactly', async () => {
  const data = new Uint8Array(4 * 4 * 3).map((_, i) => (i * 37) % 256);
  const o = await preprocessImage({ data, width: 4, height: 4, channels: 3 }, identityConfig(4));
  for (let i = 0; i < 16; i++) {
    for (let c = 0; c < 3; c++) {
      const want = Math.fround(Math.fround(Math.fround(data[i * 3 + c] * (1 / 255)) - 0.5) / 0.5);
      assert.equal(o.pixelValues[c * 16 + i], want);
    }
  }
  const plain = await preprocessImage({ data, width: 4, height: 4, channels: 3 }, identityConfig(4, { doRescale: false, doNormalize: false }));
  assert.deepEqual(Array.from(plain.pixelValues.subarray(0, 4)), [0, 111, 222, 77]);
});

test('animated GIF: the first frame is used', async () => {
  const frames = new Uint8Array(4 * 8 * 3);
  for (let i = 0; i < 32; i++) frames.set(i < 16 ? [255, 0, 0] : [0, 0, 255], i * 3);
  const gif = await sharp(frames, { raw: { width: 4, height: 8, channels: 3, pageHeight: 4 } }).gif().toBuffer();
  assert.equal((await sharp(gif).metadata()).pages, 2);
  const o = await preprocessImage(gif, identityConfig(4));
  assert.deepEqual(rgbAt(o, 0, 2, 2), [255, 0, 0]);
});

// ------------------------------------------------------------------------------------------------------------
// 4. Errors

async function rejectsImage(p: Promise<unknown>, ...patterns: (string | RegExp)[]): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof ImageError, `expected ImageError, got ${e}`);
    for (const pat of patterns) {
      if (typeof pat === 'string') assert.ok(e.message.includes(pat), `message ${JSON.stringify(e.message)} lacks ${JSON.stringify(pat)}`);
      else assert.match(e.message, pat);
    }
    return true;
  });
}

test('bad inputs raise ImageError naming the file', async () => {
  const cfg = identityConfig(8);
  const dir = await tmpDir();
  try {
    const junk = nodePath.join(dir, 'junk.png');
    await fsp.writeFile(junk, 'this is not an image, just some text');
    await rejectsImage(preprocessImage(junk, cfg), junk, /not a readable image/);
    await rejectsImage(preprocessImage(Buffer.from('GIF89a but not really'), cfg), /image data/);

    const good = await sharp({ create: { width: 64, height: 64, channels: 3, background: 'red', noise: { type: 'gaussian', mean: 128, sigma: 40 } } }).png().toBuffer();
    const truncated = nodePath.join(dir, 'truncated.png');
    await fsp.writeFile(truncated, good.subarray(0, Math.floor(good.length / 2)));
    await rejectsImage(preprocessImage(truncated, cfg), truncated);

    const empty = nodePath.join(dir, 'empty.jpg');
    await fsp.writeFile(empty, '');
    await rejectsImage(preprocessImage(empty, cfg), empty, /empty/);
    await rejectsImage(preprocessImage(new Uint8Array(0), cfg), /empty/);

    const missing = nodePath.join(dir, 'no', 'such', 'image.png');
    await rejectsImage(preprocessImage(missing, cfg), missing, /not found/);
    await rejectsImage(preprocessImage(dir, cfg), dir, /not a regular file/);
  } finally {
    await fsp.rm(dir, { recursive: true, force: true });
  }
});

test('oversized images are rejected from the header, before decoding', async () => {
  const cfg = identityConfig(8);
  // A PNG that claims 30000x30000 (900 megapixels) but holds one scanline: only a header check can reject it
  // with a size message (decoding would fail on the missing data instead).
  const huge = makePng(30000, 30000, 8, 0, [Buffer.alloc(30000)]);
  const t0 = performance.now();
  await rejectsImage(preprocessImage(huge, cfg), /30000x30000/, /over the limit of 100000000/);
  assert.ok(performance.now() - t0 < 2000);
  // The limit is configurable, and applies to raw input too.
  const small = await sharp({ create: { width: 64, height: 64, channels: 3, background: 'blue' } }).png().toBuffer();
  await rejectsImage(preprocessImage(small, cfg, { maxPixels: 4000 }), /64x64 = 4096 pixels/);
  await rejectsImage(preprocessImage({ data: new Uint8Array(64 * 64 * 3), width: 64, height: 64, channels: 3 }, cfg, { maxPixels: 4000 }), /limit/);
  // Zero-size and inconsistent raw input.
  await rejectsImage(preprocessImage({ data: new Uint8Array(0), width: 0, height: 5, channels: 3 }, cfg), /zero size/);
  await rejectsImage(preprocessImage({ data: new Uint8Array(10), width: 2, height: 2, channels: 3 }, cfg), /expected 2x2x3 = 12 bytes, got 10/);
});

test('checkImage makes the header checks preprocessImage starts with, without decoding', async () => {
  const huge = makePng(30000, 30000, 8, 0, [Buffer.alloc(30000)]);
  await rejectsImage(checkImage(huge), /30000x30000/, /over the limit of 100000000/);
  const small = await sharp({ create: { width: 64, height: 48, channels: 3, background: 'blue' } }).png().toBuffer();
  assert.deepEqual(await checkImage(small), { width: 64, height: 48, format: 'png' });
  await rejectsImage(checkImage(small, { maxPixels: 3000 }), /64x48 = 3072 pixels/);
  await assert.rejects(checkImage(small, { maxPixels: 0 }), /checkImage: maxPixels must be positive/);
  // Damage past the header is only found by decoding.
  const truncated = small.subarray(0, small.length - 20);
  assert.deepEqual(await checkImage(truncated), { width: 64, height: 48, format: 'png' });
  await rejectsImage(preprocessImage(truncated, identityConfig(8)), /cannot decode image/);
  const dir = await tmpDir();
  try {
    await rejectsImage(checkImage(nodePath.join(dir, 'none.png')), /none\.png: file not found/);
    await rejectsImage(checkImage(dir), /not a regular file/);
  } finally {
    await fsp.rm(dir, { recursive: true, force: true });
  }
});

test('config errors name the file and the key', async () => {
  const f = 'some/preprocessor_config.json';
  const base = JSON.parse(await fsp.readFile(nodePath.join(SMOLVLM, 'preprocessor_config.json'), 'utf8'));
  const bad = (patch: Record<string, unknown>, ...patterns: RegExp[]) => {
    assert.throws(() => parseImageProcessorConfig({ ...base, ...patch }, f), (e: unknown) => {
      assert.ok(e instanceof Error);
      assert.ok(e.message.startsWith(`${f}: `), e.message);
      for (const p of patterns) assert.match(e.message, p);
      return true;
    });
  };
  bad({ size: { longest_edge: 0 } }, /"size\.longest_edge"/);
  bad({ size: { height: 224, width: 224 } }, /"size"/, /longest_edge/);
  bad({ max_image_size: 'big' }, /"max_image_size"/);
  bad({ resample: 7 }, /"resample"/);
  bad({ do_resize: 'yes' }, /"do_resize"/);
  bad({ image_mean: [0.5, 0.5] }, /"image_mean"/);
  bad({ image_std: [0.5, 0, 0.5] }, /"image_std"/);
  bad({ rescale_factor: -1 }, /"rescale_factor"/);
  bad({ image_processor_type: 'CLIPImageProcessor' }, /"image_processor_type"/);
  assert.throws(() => parseImageProcessorConfig([], f), /some\/preprocessor_config\.json: expected a JSON object/);
  // Missing keys take transformers' Idefics3ImageProcessor defaults.
  const d = parseImageProcessorConfig({}, f);
  assert.deepEqual([d.longestEdge, d.maxImageSize, d.resample, d.doImageSplitting], [1456, 364, 1, true]);
  await assert.rejects(loadImageProcessorConfig('/nonexistent/model'), /\/nonexistent\/model\/preprocessor_config\.json: file not found/);
});
