// CLIP / LLaVA-1.5 image preprocessing (transformers' slow CLIPImageProcessor and LlavaImageProcessor): exactness
// against the llava-tiny third-party reference, resize/crop/pad geometry with the real LLaVA-1.5 sizes, alpha
// handling, config parsing and errors. Expected values below are derived from the transformers source formulas
// (quoted in the comments), never from this implementation's output.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as nodePath from 'node:path';
import sharp from 'sharp';
import {
  ImageError,
  loadAnyImageProcessorConfig,
  loadImageProcessorConfig,
  parseAnyImageProcessorConfig,
  parseClipProcessorConfig,
  parseImageProcessorConfig,
  preprocessImage,
  type ClipProcessorConfig,
  type PreprocessedImage,
} from '../../src/image/preprocess.ts';
import { SafetensorsFile } from '../../src/io/safetensors.ts';
import { toFloat32 } from '../../src/io/decode.ts';

const FIX = nodePath.join(import.meta.dirname, '..', 'fixtures');
const LLAVA = nodePath.join(FIX, 'llava-tiny');
const SMOLVLM = nodePath.join(FIX, 'hf', 'SmolVLM-256M-Instruct');

const MEAN = [0.48145466, 0.4578275, 0.40821073];
const STD = [0.26862954, 0.26130258, 0.27577711];
const RESCALE = 0.00392156862745098;

/** The image processor settings llava-hf/llava-1.5-7b-hf uses (CLIP ViT-L/14-336): a CLIPImageProcessor. */
const LLAVA15_JSON = {
  crop_size: { height: 336, width: 336 },
  do_center_crop: true,
  do_convert_rgb: true,
  do_normalize: true,
  do_rescale: true,
  do_resize: true,
  image_mean: MEAN,
  image_processor_type: 'CLIPImageProcessor',
  image_std: STD,
  processor_class: 'LlavaProcessor',
  resample: 3,
  rescale_factor: RESCALE,
  size: { shortest_edge: 336 },
};
const LLAVA15 = parseClipProcessorConfig(LLAVA15_JSON, 'llava-1.5-7b-hf/preprocessor_config.json');

function clip(over: Record<string, unknown>): ClipProcessorConfig {
  return parseClipProcessorConfig({ ...LLAVA15_JSON, ...over }, 'test.json');
}

/**
 * numpy's slow path for one uint8 level of channel c: rescale = float32(float64(u) * factor), then normalize
 * (x - float32(mean)) / float32(std) in float32.
 */
function norm(u: number, c: number): number {
  const f = Math.fround;
  return f(f(f(u * RESCALE) - f(MEAN[c])) / f(STD[c]));
}

/** Expected [3, h, w] pixel values for an image whose RGB levels `at(x, y)` gives. */
function expected(w: number, h: number, at: (x: number, y: number) => readonly number[]): Float32Array {
  const out = new Float32Array(3 * w * h);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const px = at(x, y);
      for (let c = 0; c < 3; c++) out[(c * h + y) * w + x] = norm(px[c], c);
    }
  }
  return out;
}

function valueAt(p: PreprocessedImage, c: number, y: number, x: number): number {
  return p.pixelValues[(c * p.height + y) * p.width + x];
}

type Raw = { data: Uint8Array; width: number; height: number; channels: 3 | 4 };

function rawImage(width: number, height: number, at: (x: number, y: number) => readonly number[], channels: 3 | 4 = 3): Raw {
  const data = new Uint8Array(width * height * channels);
  for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) data.set(at(x, y).slice(0, channels), (y * width + x) * channels);
  return { data, width, height, channels };
}

function shape(p: PreprocessedImage): number[] {
  return [p.tiles, 3, p.height, p.width, p.rows, p.cols, p.pixelValues.length];
}

// ------------------------------------------------------------------------------------------------------------
// 1. The llava-tiny reference

test('parses the llava-tiny preprocessor_config.json as a CLIP config', async () => {
  const want: ClipProcessorConfig = {
    kind: 'clip',
    doPad: false,
    doConvertRgb: true,
    doResize: true,
    size: { shortestEdge: 48 },
    resample: 3,
    doCenterCrop: true,
    cropSize: { height: 48, width: 48 },
    doRescale: true,
    rescaleFactor: RESCALE,
    doNormalize: true,
    imageMean: [0.48145466, 0.4578275, 0.40821073],
    imageStd: [0.26862954, 0.26130258, 0.27577711],
  };
  assert.deepEqual(await loadAnyImageProcessorConfig(LLAVA), want);
  // The Idefics3-only loader keeps rejecting it, pointing at the general one.
  await assert.rejects(loadImageProcessorConfig(LLAVA), /"image_processor_type".*loadAnyImageProcessorConfig/);
});

test('reproduces llava-tiny reference pixel_values [1,3,48,48] (README "Preprocessing")', async () => {
  const cfg = await loadAnyImageProcessorConfig(LLAVA);
  const out = await preprocessImage(nodePath.join(LLAVA, 'image.png'), cfg);
  const f = await SafetensorsFile.open(nodePath.join(LLAVA, 'reference.safetensors'));
  let ref: Float32Array;
  let refShape: number[];
  try {
    const info = f.tensors.get('pixel_values')!;
    refShape = info.shape;
    ref = toFloat32(info, await f.read('pixel_values'));
  } finally {
    await f.close();
  }
  assert.deepEqual(refShape, [1, 3, 48, 48]);
  assert.deepEqual(shape(out), [1, 3, 48, 48, 0, 0, ref.length]);
  let max = 0;
  for (let i = 0; i < ref.length; i++) max = Math.max(max, Math.abs(out.pixelValues[i] - ref[i]));
  assert.ok(max <= 1e-6, `max |diff| ${max}`);
});

// ------------------------------------------------------------------------------------------------------------
// 2. Geometry with the real LLaVA-1.5 sizes (shortest_edge 336, crop 336x336)

test('LLaVA-1.5 sizes: every aspect ratio ends as one 336x336 image', async () => {
  for (const [w, h] of [[640, 480], [480, 640], [401, 300], [300, 401], [336, 336], [1000, 337], [50, 20], [7, 900]]) {
    const out = await preprocessImage(rawImage(w, h, (x, y) => [x & 255, y & 255, 128]), LLAVA15);
    assert.deepEqual(shape(out), [1, 3, 336, 336, 0, 0, 3 * 336 * 336], `${w}x${h}`);
  }
});

test('centre crop offsets: (W - 336) // 2 and (H - 336) // 2 when the resize leaves the size unchanged', async () => {
  // get_resize_output_image_size: short = 336 -> new_long = int(336 * long / 336) = long, so PIL's resize is a
  // no-op; center_crop: left = (449 - 336) // 2 = 56, top = (336 - 336) // 2 = 0.
  const enc = (x: number, y: number) => [x & 255, x >> 8, y & 255];
  const land = await preprocessImage(rawImage(449, 336, enc), LLAVA15);
  assert.deepEqual(land.pixelValues, expected(336, 336, (x, y) => enc(x + 56, y)));
  // Portrait 336x451: top = (451 - 336) // 2 = 57 (floor of 57.5), left = 0.
  const port = await preprocessImage(rawImage(336, 451, enc), LLAVA15);
  assert.deepEqual(port.pixelValues, expected(336, 336, (x, y) => enc(x, y + 57)));
});

test('shortest-edge resize then centre crop: 898x672 -> 449x336 -> columns 56..391', async () => {
  // int(336 * 898 / 672) = int(449.0) = 449: the image is halved both ways (bicubic), then left = (449 - 336) // 2 = 56.
  // Source blocks are 32x32 flat colours, i.e. 16x16 after halving; a resized pixel at a block centre
  // (16b + 8) reads source pixels 32b + 17 ± 4 (bicubic support 2 x scale 2), all inside the block, so it keeps
  // the block's colour exactly. Crop column x is resized column x + 56.
  const colour = (bx: number, by: number) => [10 + 8 * bx, 20 + 11 * by, 250 - 8 * bx]; // bx <= 28, by <= 20: within 0..255
  const img = rawImage(898, 672, (x, y) => colour(Math.floor(x / 32), Math.floor(y / 32)));
  const out = await preprocessImage(img, LLAVA15);
  assert.deepEqual(shape(out), [1, 3, 336, 336, 0, 0, 3 * 336 * 336]);
  for (let by = 0; by < 21; by++) {
    for (let bx = 4; bx <= 23; bx++) {
      const x = 16 * bx + 8 - 56;
      const y = 16 * by + 8;
      const want = colour(bx, by).map((v, c) => norm(v, c));
      assert.deepEqual([0, 1, 2].map((c) => valueAt(out, c, y, x)), want, `block ${bx},${by} at crop (${x}, ${y})`);
    }
  }
  // Crop column 0 is resized column 56 = centre of block 3 (16 * 3 + 8): a crop from the left edge would read block 0.
  assert.deepEqual([0, 1, 2].map((c) => valueAt(out, c, 8, 0)), colour(3, 0).map((v, c) => norm(v, c)));
});

test('shortest-edge sizes truncate the long side: int(336 * long / short)', async () => {
  // Without the crop the output is the resized image: 401x300 -> (h, w) = (336, int(336 * 401 / 300)) =
  // (336, int(449.12)) = (336, 449); 300x401 -> (449, 336); 333x500 -> (int(504.504...), 336) = (504, 336).
  const noCrop = clip({ do_center_crop: false });
  const sizes: number[][] = [];
  for (const [w, h] of [[401, 300], [300, 401], [333, 500]]) {
    const out = await preprocessImage(rawImage(w, h, () => [1, 2, 3]), noCrop);
    sizes.push([out.height, out.width]);
  }
  assert.deepEqual(sizes, [[336, 449], [449, 336], [504, 336]]);
  // {height, width} resizes to exactly that, aspect ratio not kept.
  const exact = await preprocessImage(rawImage(401, 300, () => [1, 2, 3]), clip({ size: { height: 20, width: 30 }, do_center_crop: false }));
  assert.deepEqual([exact.height, exact.width], [20, 30]);
});

test('a crop larger than the image zero-pads it, placed at ceil((crop - size) / 2)', async () => {
  const enc = (x: number, y: number) => [100 + x, 50 + y, 7];
  // 5x3 into 8x8: top_pad = ceil((8 - 3) / 2) = 3, left_pad = ceil((8 - 5) / 2) = 2; the rest is level 0.
  const a = await preprocessImage(rawImage(5, 3, enc), clip({ do_resize: false, crop_size: { height: 8, width: 8 } }));
  assert.deepEqual(a.pixelValues, expected(8, 8, (x, y) => (x >= 2 && x < 7 && y >= 3 && y < 6 ? enc(x - 2, y - 3) : [0, 0, 0])));
  // 6x2 into 4x4: cropped along x (left = (6 - 4) // 2 = 1), padded along y (top_pad = ceil(2 / 2) = 1).
  const b = await preprocessImage(rawImage(6, 2, enc), clip({ do_resize: false, crop_size: { height: 4, width: 4 } }));
  assert.deepEqual(b.pixelValues, expected(4, 4, (x, y) => (y >= 1 && y < 3 ? enc(x + 1, y - 1) : [0, 0, 0])));
});

// ------------------------------------------------------------------------------------------------------------
// 3. LlavaImageProcessor's pad to square

test('LlavaImageProcessor do_pad: square of int(255 * mean) = (122, 116, 104), image at (max - side) // 2', async () => {
  const bg = [122, 116, 104]; // int(0.48145466 * 255 = 122.77), int(116.75), int(104.09)
  const enc = (x: number, y: number) => [x * 40, y * 40, 200];
  const pad = clip({ image_processor_type: 'LlavaImageProcessor', do_pad: true, do_resize: false, do_center_crop: false });
  assert.equal(pad.doPad, true);
  // 5x2 landscape: 5x5 canvas, start = (5 - 2) // 2 = 1, so rows 1..2 hold the image.
  const land = await preprocessImage(rawImage(5, 2, enc), pad);
  assert.deepEqual(land.pixelValues, expected(5, 5, (x, y) => (y >= 1 && y < 3 ? enc(x, y - 1) : bg)));
  // 2x6 portrait: 6x6 canvas, start = (6 - 2) // 2 = 2, columns 2..3.
  const port = await preprocessImage(rawImage(2, 6, enc), pad);
  assert.deepEqual(port.pixelValues, expected(6, 6, (x, y) => (x >= 2 && x < 4 ? enc(x - 2, y) : bg)));

  // CLIPImageProcessor never reads do_pad: no padding.
  const clipPad = clip({ do_pad: true, do_resize: false, do_center_crop: false });
  assert.equal(clipPad.doPad, false);
  const same = await preprocessImage(rawImage(5, 2, enc), clipPad);
  assert.deepEqual([same.height, same.width], [2, 5]);
});

test('LlavaImageProcessor do_pad with LLaVA-1.5 sizes: pad, then resize, then crop', async () => {
  // 672x336 flat (30, 60, 90) -> 672x672 with the image at rows (672 - 336) // 2 = 168 .. 503 -> halved to 336x336
  // (image rows 84..251) -> crop is a no-op. Rows far (> 2 output px) from the seams are flat.
  const cfg = clip({ image_processor_type: 'LlavaImageProcessorFast', do_pad: true });
  const out = await preprocessImage(rawImage(672, 336, () => [30, 60, 90]), cfg);
  assert.deepEqual(shape(out), [1, 3, 336, 336, 0, 0, 3 * 336 * 336]);
  const px = (y: number, x: number) => [0, 1, 2].map((c) => valueAt(out, c, y, x));
  const bg = [122, 116, 104].map((v, c) => norm(v, c));
  const fg = [30, 60, 90].map((v, c) => norm(v, c));
  for (const y of [0, 40, 80, 256, 300, 335]) assert.deepEqual(px(y, 168), bg, `row ${y}`);
  for (const y of [88, 168, 247]) assert.deepEqual(px(y, 168), fg, `row ${y}`);
});

// ------------------------------------------------------------------------------------------------------------
// 4. RGB conversion

test('alpha is dropped (PIL convert("RGB")), not composited, and before resizing', async () => {
  // Fully transparent pixels keep their colour: convert("RGB") ignores alpha; an Idefics3-style white
  // composite would give 255, and resizing RGBA first (premultiplied) would give 0.
  const at = (x: number, y: number) => [200, 100 + x, 50 + y, x === 0 ? 0 : 128];
  const raw = rawImage(4, 4, at, 4);
  const noResize = clip({ do_resize: false, do_center_crop: false });
  const want = expected(4, 4, (x, y) => at(x, y).slice(0, 3));
  assert.deepEqual((await preprocessImage(raw, noResize)).pixelValues, want);
  // The same pixels through a PNG: sharp keeps straight RGB under alpha 0.
  const png = await sharp(Buffer.from(raw.data), { raw: { width: 4, height: 4, channels: 4 } }).png().toBuffer();
  assert.deepEqual((await preprocessImage(png, noResize)).pixelValues, want);
  // do_convert_rgb false: transformers would fail on 4 channels; the alpha channel is dropped the same way.
  assert.deepEqual((await preprocessImage(raw, clip({ do_resize: false, do_center_crop: false, do_convert_rgb: false }))).pixelValues, want);

  // Flat colour under alpha 0 everywhere, resized 8x8 -> 4x4: RGB is flat, so the result is flat (200, 100, 50).
  const clear = rawImage(8, 8, () => [200, 100, 50, 0], 4);
  const small = await preprocessImage(clear, clip({ size: { shortest_edge: 4 }, crop_size: { height: 4, width: 4 } }));
  assert.deepEqual(small.pixelValues, expected(4, 4, () => [200, 100, 50]));
});

// ------------------------------------------------------------------------------------------------------------
// 5. Config parsing

test('config variants: defaults, integer sizes, CLIPFeatureExtractor, and the kind union', async () => {
  // CLIPImageProcessor.__init__ defaults: shortest_edge 224, crop 224x224, BICUBIC, OpenAI CLIP mean/std.
  assert.deepEqual(parseClipProcessorConfig({ image_processor_type: 'CLIPImageProcessor' }, 'f'), {
    kind: 'clip',
    doPad: false,
    doConvertRgb: true,
    doResize: true,
    size: { shortestEdge: 224 },
    resample: 3,
    doCenterCrop: true,
    cropSize: { height: 224, width: 224 },
    doRescale: true,
    rescaleFactor: 1 / 255,
    doNormalize: true,
    imageMean: MEAN,
    imageStd: STD,
  });
  // openai/clip-vit-large-patch14-336 style: no image_processor_type, integer size and crop_size
  // (get_size_dict: size N -> shortest_edge N; crop_size N -> N x N).
  const old = parseAnyImageProcessorConfig({ feature_extractor_type: 'CLIPFeatureExtractor', size: 336, crop_size: 336, resample: 3 }, 'f');
  assert.equal(old.kind, 'clip');
  if (old.kind === 'clip') {
    assert.deepEqual(old.size, { shortestEdge: 336 });
    assert.deepEqual(old.cropSize, { height: 336, width: 336 });
  }
  assert.equal(parseAnyImageProcessorConfig({ image_processor_type: 'CLIPImageProcessorFast' }, 'f').kind, 'clip');
  // Idefics3 configs come back unchanged apart from the discriminant.
  const any = await loadAnyImageProcessorConfig(SMOLVLM);
  assert.deepEqual(any, { kind: 'idefics3', ...(await loadImageProcessorConfig(SMOLVLM)) });
});

test('config errors name the file and the key', () => {
  const bad = (patch: Record<string, unknown>, ...patterns: RegExp[]) => {
    const f = 'llava/preprocessor_config.json';
    assert.throws(() => parseAnyImageProcessorConfig({ ...LLAVA15_JSON, ...patch }, f), (e: unknown) => {
      assert.ok(e instanceof Error);
      assert.ok(e.message.startsWith(`${f}: `), e.message);
      for (const p of patterns) assert.match(e.message, p);
      return true;
    });
  };
  bad({ size: { longest_edge: 336 } }, /"size"/, /shortest_edge/);
  bad({ size: { shortest_edge: 0 } }, /"size\.shortest_edge"/);
  bad({ size: { shortest_edge: 336.5 } }, /"size\.shortest_edge"/);
  bad({ crop_size: { height: 336 } }, /"crop_size"/);
  bad({ crop_size: { height: 336, width: -1 } }, /"crop_size\.width"/);
  bad({ resample: 9 }, /"resample"/);
  bad({ do_center_crop: 1 }, /"do_center_crop"/);
  bad({ do_pad: 'yes' }, /"do_pad"/);
  bad({ image_std: [0.2, 0, 0.2] }, /"image_std"/);
  bad({ rescale_factor: 0 }, /"rescale_factor"/);
  bad({ image_processor_type: 'SiglipImageProcessor' }, /"image_processor_type"/, /CLIP/);
  bad({ image_processor_type: 'LlavaImageProcessor', do_pad: true, image_mean: [2, 0.5, 0.5] }, /"image_mean"/);
  assert.throws(() => parseClipProcessorConfig({ image_processor_type: 'Idefics3ImageProcessor' }, 'f'), /"image_processor_type"/);
  assert.throws(() => parseClipProcessorConfig({ feature_extractor_type: 'ViTFeatureExtractor' }, 'f'), /"feature_extractor_type"/);
  assert.throws(() => parseAnyImageProcessorConfig([1], 'f'), /^Error: f: expected a JSON object/);
  assert.throws(() => parseImageProcessorConfig(LLAVA15_JSON, 'f'), /"image_processor_type"/);
});

// ------------------------------------------------------------------------------------------------------------
// 6. Input errors (ImageError, as for Idefics3)

async function rejectsImage(p: Promise<unknown>, ...patterns: RegExp[]): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof ImageError, `expected an ImageError, got ${String(e)}`);
    for (const pat of patterns) assert.match(e.message, pat);
    return true;
  });
}

test('image errors are ImageErrors, including intermediate sizes over maxPixels', async () => {
  await rejectsImage(preprocessImage(Buffer.from('not an image at all'), LLAVA15), /not a readable image/);
  await rejectsImage(preprocessImage(nodePath.join(LLAVA, 'missing.png'), LLAVA15), /not found/);
  await rejectsImage(preprocessImage({ data: new Uint8Array(5), width: 2, height: 2, channels: 3 }, LLAVA15), /expected 2x2x3 = 12 bytes/);
  // 100x1 (100 pixels) resized to shortest edge 336 would be 33600x336 = 11289600 pixels.
  await rejectsImage(
    preprocessImage(rawImage(100, 1, () => [1, 2, 3]), LLAVA15, { maxPixels: 1_000_000 }),
    /raw image \(resized\)/,
    /33600x336 = 11289600 pixels, over the limit of 1000000/,
  );
  // 2000x10 padded to square would be 2000x2000 = 4000000 pixels.
  const pad = clip({ image_processor_type: 'LlavaImageProcessor', do_pad: true });
  await rejectsImage(preprocessImage(rawImage(2000, 10, () => [1, 2, 3]), pad, { maxPixels: 1_000_000 }), /padded to square/, /2000x2000/);
});
