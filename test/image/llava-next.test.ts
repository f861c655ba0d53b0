// LLaVA-NeXT image preprocessing (transformers' slow LlavaNextImageProcessor, = LLaVA's process_anyres_image):
// exactness against the llava-next-tiny third-party reference, select_best_resolution with the fixture's and the
// published llava-v1.6 pinpoints, the resize/pad/tile geometry, config parsing and errors. Expected grids and
// sizes are worked by hand from the transformers formulas (quoted in the comments), never from this
// implementation's output.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as nodePath from 'node:path';
import {
  ImageError,
  loadAnyImageProcessorConfig,
  parseAnyImageProcessorConfig,
  parseLlavaNextProcessorConfig,
  patchOutputSize,
  preprocessImage,
  selectBestResolution,
  withOverrides,
  type LlavaNextProcessorConfig,
  type PreprocessedImage,
} from '../../src/image/preprocess.ts';
import { SafetensorsFile } from '../../src/io/safetensors.ts';
import { toFloat32, toInt32 } from '../../src/io/decode.ts';

const FIX = nodePath.join(import.meta.dirname, '..', 'fixtures');
const NEXT = nodePath.join(FIX, 'llava-next-tiny');
const LLAVA = nodePath.join(FIX, 'llava-tiny');
const SMOLVLM = nodePath.join(FIX, 'hf', 'SmolVLM-256M-Instruct');

const MEAN = [0.48145466, 0.4578275, 0.40821073];
const STD = [0.26862954, 0.26130258, 0.27577711];
const RESCALE = 0.00392156862745098;

/** The fixture's pinpoints ([height, width]) and the published llava-v1.6-mistral-7b-hf ones. */
const TINY_PINPOINTS: [number, number][] = [[48, 96], [96, 48], [96, 96], [144, 48], [48, 144]];
const V16_PINPOINTS: [number, number][] = [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]];

/** llava-hf/llava-v1.6-mistral-7b-hf's preprocessor_config.json (CLIP ViT-L/14-336). */
const V16_JSON = {
  aspect_ratio_setting: 'anyres',
  crop_size: { height: 336, width: 336 },
  do_center_crop: true,
  do_convert_rgb: true,
  do_normalize: true,
  do_pad: true,
  do_rescale: true,
  do_resize: true,
  image_grid_pinpoints: V16_PINPOINTS,
  image_mean: MEAN,
  image_processor_type: 'LlavaNextImageProcessor',
  image_std: STD,
  processor_class: 'LlavaNextProcessor',
  resample: 3,
  rescale_factor: RESCALE,
  size: { shortest_edge: 336 },
};
const V16 = parseLlavaNextProcessorConfig(V16_JSON, 'llava-v1.6-mistral-7b-hf/preprocessor_config.json');

/** numpy's slow path for one uint8 level of channel c (float32(float64(u)·factor), then (x − mean)/std in f32). */
function norm(u: number, c: number): number {
  const f = Math.fround;
  return f(f(f(u * RESCALE) - f(MEAN[c])) / f(STD[c]));
}

type Raw = { data: Uint8Array; width: number; height: number; channels: 3 | 4 };

function flat(width: number, height: number, px: readonly number[]): Raw {
  const ch = px.length as 3 | 4;
  const data = new Uint8Array(width * height * ch);
  for (let i = 0; i < width * height; i++) data.set(px, i * ch);
  return { data, width, height, channels: ch };
}

function shape(p: PreprocessedImage): number[] {
  return [p.tiles, 3, p.height, p.width, p.rows, p.cols, p.pixelValues.length];
}

/**
 * Checks the tiles of a flat-colour image (levels `rgb`): the base tile is all colour; grid tile t (row-major after
 * the base) shows the colour inside the resized image's rectangle, placed at (top, left) in the padded grid with
 * size nh×nw, and padding (level 0) elsewhere.
 */
function assertGrid(p: PreprocessedImage, rgb: readonly number[], place: { top: number; left: number; nh: number; nw: number }): void {
  const side = p.height;
  const plane = side * side;
  for (let t = 0; t < p.tiles; t++) {
    const r = Math.floor((t - 1) / p.cols);
    const c = (t - 1) % p.cols;
    for (let ch = 0; ch < 3; ch++) {
      for (let y = 0; y < side; y++) {
        for (let x = 0; x < side; x++) {
          const gy = r * side + y;
          const gx = c * side + x;
          const inside = t === 0 || (gy >= place.top && gy < place.top + place.nh && gx >= place.left && gx < place.left + place.nw);
          const want = norm(inside ? rgb[ch] : 0, ch);
          const got = p.pixelValues[((t * 3 + ch) * side + y) * side + x];
          if (got !== want) assert.fail(`tile ${t} channel ${ch} (y ${y}, x ${x}; grid ${gy}, ${gx}): ${got}, expected ${want} (${inside ? 'image' : 'padding'})`);
        }
      }
    }
  }
}

// ------------------------------------------------------------------------------------------------------------
// 1. The llava-next-tiny reference

test('parses the llava-next-tiny preprocessor_config.json as a LLaVA-NeXT config', async () => {
  const want: LlavaNextProcessorConfig = {
    kind: 'llava_next',
    doPad: true,
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
    imageGridPinpoints: TINY_PINPOINTS,
  };
  assert.deepEqual(await loadAnyImageProcessorConfig(NEXT), want);
});

test('reproduces llava-next-tiny pixel_values [3,3,48,48] and image_sizes [[38,62]] (README "Image preprocessing")', async () => {
  const cfg = await loadAnyImageProcessorConfig(NEXT);
  const out = await preprocessImage(nodePath.join(NEXT, 'image.png'), cfg);
  const f = await SafetensorsFile.open(nodePath.join(NEXT, 'reference.safetensors'));
  let ref: Float32Array;
  let refShape: number[];
  let sizes: Int32Array;
  try {
    const info = f.tensors.get('pixel_values')!;
    refShape = info.shape;
    ref = toFloat32(info, await f.read('pixel_values'));
    sizes = toInt32(f.tensors.get('image_sizes')!, await f.read('image_sizes'));
  } finally {
    await f.close();
  }
  assert.deepEqual(refShape, [3, 3, 48, 48]);
  // [48, 96] chosen → 1 row × 2 columns of 48×48 crops, after the base tile.
  assert.deepEqual(shape(out), [3, 3, 48, 48, 1, 2, ref.length]);
  assert.deepEqual([out.originalHeight, out.originalWidth], Array.from(sizes));
  let max = 0;
  let worst = -1;
  for (let i = 0; i < ref.length; i++) {
    const d = Math.abs(out.pixelValues[i] - ref[i]);
    if (d > max) [max, worst] = [d, i];
  }
  assert.ok(max <= 1e-6, `max |diff| ${max} at index ${worst}`);
});

// ------------------------------------------------------------------------------------------------------------
// 2. select_best_resolution: scale = min(w/W, h/H), effective = min(int(W·scale)·int(H·scale), W·H),
//    wasted = h·w − effective; the largest effective, ties → least wasted, then the first in list order.

test('select_best_resolution with the published llava-v1.6 pinpoints (crop 336)', () => {
  // [height, width] of the image → chosen [h, w]. Sizes below are W×H in the comments.
  const cases: [number, number, [number, number], string][] = [
    // 672×672: [672,672] scale 1 keeps all 451584 pixels; every other pinpoint scales by 0.5 (112896).
    [672, 672, [672, 672], '672×672'],
    // 1200×800 (W×H): [336,672] s = min(0.56, 0.42) = 0.42 → 504·336 = 169344; [672,336] s = 0.28 → 336·224 = 75264;
    // [672,672] s = min(0.56, 0.84) = 0.56 → 672·448 = 301056; [1008,336] s = 0.28 → 75264;
    // [336,1008] s = min(0.84, 0.42) = 0.42 → 169344. → [672,672], a 2×2 grid.
    [800, 1200, [672, 672], '1200×800'],
    [1200, 800, [672, 672], '800×1200'],
    // 2000×20: [336,672] s = 0.336 → 672·6 = 4032; [672,336] s = 0.168 → 336·3 = 1008; [672,672] 4032 with more
    // waste; [1008,336] 1008; [336,1008] s = min(0.504, 16.8) → 1008·10 = 10080 (≤ 40000). → [336,1008], 1×3.
    [20, 2000, [336, 1008], '2000×20'],
    [2000, 20, [1008, 336], '20×2000'],
    // 10×7, smaller than a crop: every pinpoint keeps all 70 pixels; least wasted: [336,672] and [672,336] both
    // waste 225792 − 70 → the first, [336,672].
    [7, 10, [336, 672], '10×7'],
    [10, 7, [336, 672], '7×10'],
    // 336×336, exactly one crop: [336,672] and [672,336] both keep 112896 at scale 1 and waste as much → the first.
    [336, 336, [336, 672], '336×336'],
    // Exact pinpoint sizes: scale 1, nothing wasted.
    [336, 1008, [336, 1008], '1008×336'],
    [1008, 336, [1008, 336], '336×1008'],
    [336, 672, [336, 672], '672×336'],
    // 640×480: [336,672] s = 0.7 → 448·336 = 150528; [672,672] s = 1.05 → 672·504 = 338688 > 307200 → 307200. → [672,672].
    [480, 640, [672, 672], '640×480'],
  ];
  for (const [h, w, want, what] of cases) assert.deepEqual(selectBestResolution(h, w, V16_PINPOINTS), want, what);
});

test('select_best_resolution with the fixture pinpoints, and its tie rules', () => {
  const cases: [number, number, [number, number], string][] = [
    // 62×38 (README), W·H = 2356: [48,96] s = min(1.548, 1.263) → 78·48 = 3744 → 2356, waste 4608 − 2356 = 2252;
    // [96,48] s = 0.774 → 48·29 = 1392; [96,96] s = 1.548 → 2356, waste 6860; [144,48] 1392; [48,144] s = 1.263
    // → 2356, waste 4556. → [48,96].
    [38, 62, [48, 96], '62×38'],
    // 2000×20: every pinpoint but [48,144] leaves int(20·s) = 0 rows (effective 0); [48,144] s = 0.072 → 144·1 = 144.
    [20, 2000, [48, 144], '2000×20'],
    [2000, 20, [144, 48], '20×2000'],
    // 10000×1: every effective is 0; the first pinpoint takes it (0 == 0 and its waste < ∞), none wastes less.
    [1, 10000, [48, 96], '10000×1'],
    // 100×30: [48,144] s = min(1.44, 1.6) → 144·43 ≥ 3000 → 3000, the only pinpoint keeping all; [48,96] 96·28 = 2688.
    [30, 100, [48, 144], '100×30'],
    // Exact sizes.
    [48, 96, [48, 96], '96×48'],
    [144, 48, [144, 48], '48×144'],
  ];
  for (const [h, w, want, what] of cases) assert.deepEqual(selectBestResolution(h, w, TINY_PINPOINTS), want, what);
  // 30×30: every pinpoint keeps all 900 pixels; [48,96] and [96,48] waste 3708 → the first in list order.
  assert.deepEqual(selectBestResolution(30, 30, TINY_PINPOINTS), [48, 96]);
  assert.deepEqual(selectBestResolution(30, 30, [...TINY_PINPOINTS].reverse()), [96, 48]);
  // Equal effective, less waste later in the list: [96,96] wastes 8316, [48,96] 3708.
  assert.deepEqual(selectBestResolution(30, 30, [[96, 96], [48, 96]]), [48, 96]);
  assert.throws(() => selectBestResolution(30, 30, []), RangeError);
});

// ------------------------------------------------------------------------------------------------------------
// 3. Resize (get_patch_output_size) and padding (divmod(target − new, 2), remainder bottom/right)

test('get_patch_output_size keeps the aspect ratio, one side equal to the target', () => {
  // [height, width] → [height, width]
  assert.deepEqual(patchOutputSize(38, 62, [48, 96]), [48, 79]); // scale_h 1.263 < scale_w 1.548: W' = ceil(62·1.263) = 79
  // 1200×800 → [672,672]: scale_w = 0.56 < scale_h = 0.84 → W' = 672, H' = ceil(800 · (672/1200)); in float64
  // 672/1200 is just above 0.56 and 800 times it is 448.00000000000006 (Python gives the same), so H' = 449.
  assert.deepEqual(patchOutputSize(800, 1200, [672, 672]), [449, 672]);
  assert.deepEqual(patchOutputSize(20, 2000, [336, 1008]), [11, 1008]); // ceil(20 · 0.504) = ceil(10.08)
  assert.deepEqual(patchOutputSize(7, 10, [336, 672]), [336, 480]); // scale_w 67.2 ≥ scale_h 48: W' = 10·48
  assert.deepEqual(patchOutputSize(30, 100, [48, 144]), [44, 144]); // ceil(30 · 1.44) = ceil(43.2)
  assert.deepEqual(patchOutputSize(1, 10000, [48, 96]), [1, 96]); // ceil(1 · 0.0096) = 1
  assert.deepEqual(patchOutputSize(336, 336, [336, 672]), [336, 336]); // scales 2 and 1: H' = 336, W' = 336
});

test('tiles of flat images: base first, then the padded grid row-major (fixture config, crop 48)', async () => {
  const cfg = await loadAnyImageProcessorConfig(NEXT);
  const white = [255, 255, 255];
  // 62×38 → [48,96], resized 79×48, padded left 8, right 9.
  let out = await preprocessImage(flat(62, 38, white), cfg);
  assert.deepEqual(shape(out), [3, 3, 48, 48, 1, 2, 3 * 3 * 48 * 48]);
  assertGrid(out, white, { top: 0, left: 8, nh: 48, nw: 79 });
  // 10×7 → [48,96]: scale_w 9.6 ≥ scale_h 6.857 → 69×48 (ceil(68.57)); divmod(27, 2) → left 13, right 14.
  out = await preprocessImage(flat(10, 7, white), cfg);
  assert.deepEqual(shape(out), [3, 3, 48, 48, 1, 2, 3 * 3 * 48 * 48]);
  assertGrid(out, white, { top: 0, left: 13, nh: 48, nw: 69 });
  // 100×30 → [48,144] (1×3): 144×44, divmod(4, 2) → top 2, bottom 2.
  out = await preprocessImage(flat(100, 30, white), cfg);
  assert.deepEqual(shape(out), [4, 3, 48, 48, 1, 3, 4 * 3 * 48 * 48]);
  assertGrid(out, white, { top: 2, left: 0, nh: 44, nw: 144 });
  // 20×2000 → [144,48] (3×1): 2×144 (ceil(20 · 0.072) = 2), divmod(46, 2) → left 23, right 23.
  out = await preprocessImage(flat(20, 2000, white), cfg);
  assert.deepEqual(shape(out), [4, 3, 48, 48, 3, 1, 4 * 3 * 48 * 48]);
  assertGrid(out, white, { top: 0, left: 23, nh: 144, nw: 2 });
  assert.deepEqual([out.originalHeight, out.originalWidth], [2000, 20]);
  // 96×48, an exact pinpoint: no resize, no padding.
  out = await preprocessImage(flat(96, 48, white), cfg);
  assert.deepEqual(shape(out), [3, 3, 48, 48, 1, 2, 3 * 3 * 48 * 48]);
  assertGrid(out, white, { top: 0, left: 0, nh: 48, nw: 96 });
});

test('llava-v1.6 sizes: 1200×800 → 2×2 grid of 336, resized 672×449, padded 111 top and 112 bottom', async () => {
  const grey = [128, 64, 32];
  const out = await preprocessImage(flat(1200, 800, grey), V16);
  assert.deepEqual(shape(out), [5, 3, 336, 336, 2, 2, 5 * 3 * 336 * 336]);
  assert.deepEqual([out.originalHeight, out.originalWidth], [800, 1200]);
  assertGrid(out, grey, { top: 111, left: 0, nh: 449, nw: 672 });
});

test('alpha is dropped (PIL convert("RGB")) before anything, not composited', async () => {
  const cfg = await loadAnyImageProcessorConfig(NEXT);
  const out = await preprocessImage(flat(62, 38, [200, 100, 50, 0]), cfg);
  assertGrid(out, [200, 100, 50], { top: 0, left: 8, nh: 48, nw: 79 });
});

test('every processor reports the original size', async () => {
  const png = nodePath.join(NEXT, 'image.png'); // 62×38
  for (const dir of [LLAVA, SMOLVLM]) {
    const out = await preprocessImage(png, await loadAnyImageProcessorConfig(dir));
    assert.deepEqual([out.originalHeight, out.originalWidth], [38, 62], dir);
  }
});

// ------------------------------------------------------------------------------------------------------------
// 4. Config parsing, overrides and errors

test('config variants: defaults, Fast/Pil class names, {height, width} sizes', () => {
  // LlavaNextImageProcessor.__init__ defaults: CLIP's (shortest_edge 224, crop 224), do_pad true, v1.6 pinpoints.
  assert.deepEqual(parseLlavaNextProcessorConfig({ image_processor_type: 'LlavaNextImageProcessor', crop_size: 336 }, 'f'), {
    kind: 'llava_next',
    doPad: true,
    doConvertRgb: true,
    doResize: true,
    size: { shortestEdge: 224 },
    resample: 3,
    doCenterCrop: true,
    cropSize: { height: 336, width: 336 },
    doRescale: true,
    rescaleFactor: 1 / 255,
    doNormalize: true,
    imageMean: MEAN,
    imageStd: STD,
    imageGridPinpoints: V16_PINPOINTS,
  });
  for (const type of ['LlavaNextImageProcessorFast', 'LlavaNextImageProcessorPil']) {
    assert.equal(parseAnyImageProcessorConfig({ ...V16_JSON, image_processor_type: type }, 'f').kind, 'llava_next');
  }
  // CLIP and LLaVA-1.5 types stay CLIP.
  assert.equal(parseAnyImageProcessorConfig({ ...V16_JSON, image_processor_type: 'LlavaImageProcessor' }, 'f').kind, 'clip');
});

test('a {height, width} size resizes the base tile to min(height, width) squared', async () => {
  // transformers: get_image_patches(size=(min(h, w), min(h, w))); each tile then resized to exactly {height, width}.
  const cfg = parseLlavaNextProcessorConfig({ ...V16_JSON, size: { height: 48, width: 48 }, crop_size: 48, image_grid_pinpoints: TINY_PINPOINTS }, 'f');
  const out = await preprocessImage(flat(62, 38, [9, 8, 7]), cfg);
  assert.deepEqual(shape(out), [3, 3, 48, 48, 1, 2, 3 * 3 * 48 * 48]);
  assertGrid(out, [9, 8, 7], { top: 0, left: 8, nh: 48, nw: 79 });
});

test('imageSplitting / imageSize overrides are refused, naming the processor', () => {
  assert.equal(withOverrides(V16, {}), V16);
  assert.throws(
    () => withOverrides(V16, { imageSplitting: false }),
    /^RangeError: imageSplitting is an Idefics3 processor option: this model's LLaVA-NeXT processor cuts every image into 336×336 tiles at one of its image_grid_pinpoints \(336×672, 672×336, 672×672, 1008×336, 336×1008\)/,
  );
  assert.throws(() => withOverrides(V16, { imageSplitting: true, imageSize: 1000 }), /imageSplitting and imageSize are Idefics3 processor options: .*LLaVA-NeXT/);
});

test('malformed image_grid_pinpoints: errors name the file, the key and the value', () => {
  const f = 'llava-next/preprocessor_config.json';
  const bad = (pinpoints: unknown, ...patterns: RegExp[]) => {
    assert.throws(() => parseAnyImageProcessorConfig({ ...V16_JSON, image_grid_pinpoints: pinpoints }, f), (e: unknown) => {
      assert.ok(e instanceof Error);
      assert.ok(e.message.startsWith(`${f}: key "image_grid_pinpoints": `), e.message);
      for (const p of patterns) assert.match(e.message, p);
      return true;
    });
  };
  bad('[[336, 672]]', /non-empty list of \[height, width\] pairs/, /got "\[\[336, 672\]\]"/);
  bad({ height: 336, width: 672 }, /got \{"height":336,"width":672\}/);
  bad(336, /got 336/);
  bad([], /non-empty list/, /got \[\]/);
  bad([[336, 672], [0, 336]], /entry 1 is \[0,336\]/);
  bad([[336, 672.5]], /entry 0 is \[336,672\.5\]/);
  bad([[336, 672, 1]], /entry 0 is \[336,672,1\]/);
  bad([[336]], /entry 0 is \[336\]/);
  bad([336, 672], /entry 0 is 336/);
  bad([[-336, 672]], /entry 0 is \[-336,672\]/);
  // Not a multiple of the tile side (crop_size.height): transformers would cut a partial tile the model never counts.
  bad([[336, 672], [500, 336]], /multiple of the tile side crop_size\.height 336/, /entry 1 is \[500,336\]/);
  // The CLIP keys are checked as for CLIP, and the type must be LLaVA-NeXT for the direct parser.
  assert.throws(() => parseLlavaNextProcessorConfig({ ...V16_JSON, size: { longest_edge: 336 } }, f), /"size"/);
  assert.throws(() => parseLlavaNextProcessorConfig({ ...V16_JSON, image_processor_type: 'CLIPImageProcessor' }, f), /"image_processor_type".*LlavaNext/);
  assert.throws(() => parseLlavaNextProcessorConfig({ ...V16_JSON, do_pad: 'no' }, f), /"do_pad"/);
});

test('intermediate sizes over maxPixels are ImageErrors', async () => {
  // 10×7 (70 pixels) is tiled at 336×672: the padded grid is 672x336 = 225792 pixels.
  await assert.rejects(preprocessImage(flat(10, 7, [1, 2, 3]), V16, { maxPixels: 100_000 }), (e: unknown) => {
    assert.ok(e instanceof ImageError, String(e));
    assert.match(e.message, /raw image \(padded to the grid resolution 336×672\)/);
    assert.match(e.message, /672x336 = 225792 pixels, over the limit of 100000/);
    return true;
  });
});
