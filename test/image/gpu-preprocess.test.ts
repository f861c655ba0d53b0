// Image preprocessing on the GPU (src/image/gpu-preprocess.ts) against the same third-party references as the
// JavaScript path (transformers' Idefics3, CLIP and LLaVA-NeXT processors in test/fixtures), and against the
// JavaScript path itself for every processor at odd sizes, extreme aspect ratios, every filter, RGB and RGBA;
// then the model fed by the device: the pipeline's reference tokens, tiles written across vision groups, and the
// prefix reuse that compares device keys.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import sharp from 'sharp';
import { FIXTURES, openReference } from '../reference.ts';
import { Rng, testGpu } from '../helpers.ts';
import {
  loadAnyImageProcessorConfig,
  parseAnyImageProcessorConfig,
  parseImageProcessorConfig,
  preprocessImage,
  type AnyImageProcessorConfig,
  type ImageInput,
} from '../../src/image/preprocess.ts';
import { DeviceImage } from '../../src/image/gpu-preprocess.ts';
import { loadModel, type VisionLanguagePipeline } from '../../src/index.ts';
import { SmolVLM } from '../../src/models/smolvlm.ts';
import { imageLayout } from '../../src/models/family.ts';
import type { Gpu } from '../../src/gpu/device.ts';

const IMAGES = join(FIXTURES, 'images');

/** The largest |Δ| and where, after checking the shapes. */
function maxDiff(got: Float32Array, want: Float32Array): { max: number; at: number } {
  assert.equal(got.length, want.length, 'length');
  let max = 0;
  let at = -1;
  for (let i = 0; i < got.length; i++) {
    const d = Math.abs(got[i] - want[i]);
    if (!(d <= max)) [max, at] = [Number.isNaN(d) ? Infinity : d, i];
  }
  return { max, at };
}

/** The device's pixel values for `input`, read back, with its geometry. */
async function onDevice(gpu: Gpu, input: ImageInput, cfg: AnyImageProcessorConfig) {
  const dev = await DeviceImage.create(gpu, input, cfg);
  try {
    return { values: await dev.read(), geometry: { ...imageLayout(dev) }, tiles: dev.tiles, height: dev.height, width: dev.width };
  } finally {
    dev.dispose();
  }
}

/** GPU against JavaScript: the same geometry, and values within 1e-6 (they are equal: max |Δ| is reported). */
async function agrees(gpu: Gpu, input: ImageInput, cfg: AnyImageProcessorConfig, label: string): Promise<number> {
  const js = await preprocessImage(input, cfg);
  const dev = await onDevice(gpu, input, cfg);
  assert.deepEqual([dev.tiles, dev.height, dev.width, dev.geometry], [js.tiles, js.height, js.width, imageLayout(js)], `${label}: geometry`);
  const { max, at } = maxDiff(dev.values, js.pixelValues);
  assert.ok(max <= 1e-6, `${label}: max |Δ| ${max} at ${at} (got ${dev.values[at]}, expected ${js.pixelValues[at]})`);
  return max;
}

/** A raw image with seeded noise over a gradient (alpha from a few levels, 0 and 255 among them). */
function noise(width: number, height: number, channels: 3 | 4, seed: number) {
  const rng = new Rng(seed);
  const data = new Uint8Array(width * height * channels);
  const alphas = [0, 1, 37, 128, 200, 255, 255];
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const p = (y * width + x) * channels;
      for (let c = 0; c < 3; c++) data[p + c] = Math.min(255, Math.max(0, Math.round(((x + y * (c + 1)) * 255) / (width + height) + rng.normal() * 30)));
      if (channels === 4) data[p + 3] = alphas[Math.floor(rng.next() * alphas.length)];
    }
  }
  return { data, width, height, channels };
}

// Odd sizes and extreme aspect ratios.
const SIZES: [number, number][] = [
  [1, 300],
  [300, 1],
  [997, 13],
  [13, 997],
  [333, 777],
  [61, 45],
];

const IDEFICS3 = (over: Record<string, unknown>) =>
  parseAnyImageProcessorConfig({ image_processor_type: 'Idefics3ImageProcessor', size: { longest_edge: 96 }, max_image_size: { longest_edge: 32 }, ...over }, 'idefics3 test config');
const LLAVA15 = {
  image_processor_type: 'CLIPImageProcessor',
  crop_size: { height: 336, width: 336 },
  size: { shortest_edge: 336 },
  resample: 3,
};

describe('GPU preprocessing matches the transformers references', () => {
  let gpu: Gpu;
  before(async () => {
    gpu = await testGpu();
  });

  for (const name of ['rgba-37x23.lanczos-split', 'rgb-61x45.bicubic-split', 'rgb-61x45.bilinear-nosplit-clipnorm']) {
    it(`Idefics3ImageProcessor: ${name}`, async () => {
      const ref = await openReference(join(IMAGES, `${name}.safetensors`));
      try {
        const cfg = parseImageProcessorConfig(JSON.parse(ref.metadata.preprocessor_config), `${name}.safetensors`);
        const want = await ref.f32('pixel_values');
        const dev = await onDevice(gpu, join(IMAGES, ref.metadata.image), cfg);
        assert.deepEqual([dev.tiles, 3, dev.height, dev.width], want.shape);
        assert.deepEqual([dev.geometry.rows, dev.geometry.cols], [Number(ref.metadata.rows), Number(ref.metadata.cols)]);
        const { max } = maxDiff(dev.values, want.data);
        assert.ok(max <= 1e-6, `max |Δ| ${max}`);
      } finally {
        await ref.close();
      }
    });
  }

  // The model fixtures' references: nanoVLM/SmolVLM (Idefics3), LLaVA-1.5 (CLIP), LLaVA-NeXT (anyres, 3 crops).
  for (const [model, shape] of [
    ['smolvlm-tiny', [1, 3, 64, 64]],
    ['llava-tiny', [1, 3, 48, 48]],
    ['llava-next-tiny', [3, 3, 48, 48]],
  ] as const) {
    it(`${model}: reference pixel_values [${shape.join(', ')}]`, async () => {
      const dir = join(FIXTURES, model);
      const ref = await openReference(join(dir, 'reference.safetensors'));
      try {
        const want = await ref.f32('pixel_values');
        assert.deepEqual(want.shape, shape);
        const dev = await onDevice(gpu, join(dir, 'image.png'), await loadAnyImageProcessorConfig(dir));
        assert.deepEqual([dev.tiles, 3, dev.height, dev.width], want.shape);
        if (ref.names.includes('image_sizes')) assert.deepEqual([dev.geometry.height, dev.geometry.width], [...(await ref.i32('image_sizes'))]);
        const { max } = maxDiff(dev.values, want.data);
        assert.ok(max <= 1e-6, `max |Δ| ${max}`);
      } finally {
        await ref.close();
      }
    });
  }
});

describe('GPU preprocessing equals the JavaScript path', () => {
  let gpu: Gpu;
  before(async () => {
    gpu = await testGpu();
  });

  it('Idefics3 with splitting: every filter, RGB and RGBA, odd sizes and extreme aspect ratios', async () => {
    let worst = 0;
    for (const [w, h] of SIZES) {
      for (const channels of [3, 4] as const) {
        for (const resample of [0, 1, 2, 3, 4, 5]) {
          const img = noise(w, h, channels, w * 7 + h + resample);
          worst = Math.max(worst, await agrees(gpu, img, IDEFICS3({ resample }), `${w}×${h}×${channels} resample ${resample}`));
        }
      }
    }
    console.log(`Idefics3: max |Δ| ${worst} over ${SIZES.length * 12} images`);
  });

  it('Idefics3 variants: no splitting, no resize, upscaling, RGBA without do_convert_rgb, the real SmolVLM config', async () => {
    const smolvlm = await loadAnyImageProcessorConfig(join(FIXTURES, 'hf', 'SmolVLM-256M-Instruct'));
    const cases: [string, AnyImageProcessorConfig, [number, number]][] = [
      ['no splitting', IDEFICS3({ do_image_splitting: false }), [333, 777]],
      ['no resize', IDEFICS3({ do_resize: false }), [61, 45]],
      ['upscaling a 7×5', IDEFICS3({ size: { longest_edge: 200 }, max_image_size: { longest_edge: 48 } }), [7, 5]],
      ['do_convert_rgb false', IDEFICS3({ do_convert_rgb: false }), [97, 31]],
      ['SmolVLM-256M', smolvlm, [333, 777]],
      ['SmolVLM-256M', smolvlm, [997, 13]],
    ];
    for (const [label, cfg, [w, h]] of cases) {
      for (const channels of [3, 4] as const) await agrees(gpu, noise(w, h, channels, w + h), cfg, `${label} ${w}×${h}×${channels}`);
    }
  });

  it('CLIP: LLaVA-1.5 resize and centre crop, pad to square, crops larger than the image, odd sizes', async () => {
    const cfgs: [string, Record<string, unknown>][] = [
      ['LLaVA-1.5', LLAVA15],
      ['LlavaImageProcessor do_pad', { ...LLAVA15, image_processor_type: 'LlavaImageProcessor', do_pad: true }],
      ['crop larger than the resized image', { ...LLAVA15, size: { shortest_edge: 20 }, crop_size: { height: 30, width: 41 } }],
      // A padded square, not resized, then a crop past it: a window of a padded window.
      ['pad, no resize, crop past the square', { ...LLAVA15, image_processor_type: 'LlavaImageProcessor', do_pad: true, do_resize: false, crop_size: { height: 60, width: 71 } }],
      ['{height, width} size, bilinear, no crop', { ...LLAVA15, size: { height: 40, width: 23 }, resample: 2, do_center_crop: false }],
    ];
    for (const [label, json] of cfgs) {
      const cfg = parseAnyImageProcessorConfig(json, label);
      for (const [w, h] of label.startsWith('pad, no resize') ? [[37, 23] as [number, number], [5, 50] as [number, number]] : SIZES) {
        // LLaVA-1.5 makes 1×300 a 336×100800 image: past one storage binding (below).
        if (label === 'LLaVA-1.5' && Math.min(w, h) === 1) continue;
        for (const channels of [3, 4] as const) await agrees(gpu, noise(w, h, channels, w * 3 + h), cfg, `${label} ${w}×${h}×${channels}`);
      }
    }
  });

  it('an image whose resize outgrows one storage binding is a PlaneSizeError (the pipeline then preprocesses on the host)', async () => {
    const cfg = parseAnyImageProcessorConfig(LLAVA15, 'LLaVA-1.5');
    const small = await testGpu({ maxStorageBufferBindingSize: 1 << 20 });
    // 300×1 → 100800×336 → crop: fine on the host, a 135 MB plane on the device.
    await assert.rejects(DeviceImage.create(small, noise(300, 1, 3, 2), cfg), { name: 'PlaneSizeError', message: /100800×336 pixels/ });
    // A 600×400 photo's 504×336 intermediate needs 677,376 bytes: within 1 MiB.
    await agrees(small, noise(600, 400, 3, 2), cfg, '600×400 under a 1 MiB binding');
    const pipe = await loadModel(join(FIXTURES, 'llava-tiny'), { gpu: small, preprocess: 'gpu' });
    try {
      const tiny = await loadAnyImageProcessorConfig(join(FIXTURES, 'llava-tiny'));
      // 48² crops: a 1×2000 image becomes 48×96000 (18 MB) before its crop.
      const long = noise(1, 2000, 3, 4);
      await assert.rejects(DeviceImage.create(small, long, tiny), { name: 'PlaneSizeError' });
      const p = await pipe.prepare({ prompt: 'Hi?', images: [noise(40, 30, 3, 5), long] });
      try {
        assert.equal(p.images!.images.some((im) => im.device), false, 'the whole request on the host');
        const js = await preprocessImage(long, tiny);
        assert.deepEqual(p.images!.pixels.subarray(3 * 48 * 48), js.pixelValues);
      } finally {
        p.dispose();
      }
    } finally {
      pipe.dispose();
    }
  });

  it('LLaVA-NeXT anyres: the fixture config and the published llava-v1.6 one, odd sizes and extreme aspect ratios', async () => {
    const tiny = await loadAnyImageProcessorConfig(join(FIXTURES, 'llava-next-tiny'));
    const published = parseAnyImageProcessorConfig(
      { image_processor_type: 'LlavaNextImageProcessor', crop_size: { height: 336, width: 336 }, size: { shortest_edge: 336 }, resample: 3 },
      'llava-v1.6',
    );
    // Tiles resized again before their crop (size ≠ crop): a resize of a window of a padded window.
    const resized = parseAnyImageProcessorConfig({ image_processor_type: 'LlavaNextImageProcessor', crop_size: { height: 48, width: 48 }, size: { shortest_edge: 40 }, image_grid_pinpoints: [[48, 96], [96, 48], [96, 96]] }, 'resized tiles');
    for (const [label, cfg, sizes] of [
      ['fixture', tiny, SIZES],
      ['llava-v1.6', published, [[333, 777], [997, 13], [1, 300]]],
      ['tiles resized before the crop', resized, [[61, 45], [13, 97]]],
    ] as const) {
      for (const [w, h] of sizes) {
        for (const channels of [3, 4] as const) await agrees(gpu, noise(w, h, channels, w + h * 5), cfg, `${label} ${w}×${h}×${channels}`);
      }
    }
  });

  it('a photo through every processor, from the file as sharp decodes it', async () => {
    const photo = await sharp(join(FIXTURES, 'llava-tiny', 'image.png')).resize(211, 157).jpeg().toBuffer();
    for (const model of ['smolvlm-tiny', 'llava-tiny', 'llava-next-tiny']) {
      await agrees(gpu, photo, await loadAnyImageProcessorConfig(join(FIXTURES, model)), model);
    }
  });

  it('errors as the JavaScript path: ImageErrors for bad inputs and sizes over the pixel limit', async () => {
    const cfg = parseAnyImageProcessorConfig({ ...LLAVA15, image_processor_type: 'LlavaImageProcessor', do_pad: true }, 'pad');
    await assert.rejects(DeviceImage.create(gpu, join(IMAGES, 'missing.png'), cfg), { name: 'ImageError', message: /file not found/ });
    // 300×1 pads to a 300×300 square: over a 1,000-pixel limit, as preprocessImage says.
    const wide = noise(300, 1, 3, 1);
    await assert.rejects(preprocessImage(wide, cfg, { maxPixels: 1000 }), /padded to square/);
    await assert.rejects(DeviceImage.create(gpu, wide, cfg, { maxPixels: 1000 }), /padded to square/);
  });
});

describe('the model fed by the device', () => {
  let cpu: VisionLanguagePipeline;
  let dev: VisionLanguagePipeline;
  const NEXT = join(FIXTURES, 'llava-next-tiny');
  before(async () => {
    const gpu = await testGpu();
    cpu = await loadModel(NEXT, { gpu, preprocess: 'cpu' });
    dev = await loadModel(NEXT, { gpu, preprocess: 'gpu' });
  });
  after(() => {
    cpu?.dispose();
    dev?.dispose();
  });

  it('LLaVA-NeXT: the reference tokens through the pipeline, host pixels left empty', async () => {
    assert.equal(dev.preprocess, 'gpu');
    const ref = await openReference(join(NEXT, 'reference.safetensors'));
    try {
      const req = { messages: [{ role: 'user', content: [{ type: 'image' as const }, { type: 'text' as const, text: 'Hi?' }] }], images: [join(NEXT, 'image.png')] };
      const p = await dev.prepare(req);
      try {
        assert.deepEqual(p.ids, [...(await ref.i32('input_ids'))]);
        assert.equal(p.images!.pixels.length, 0);
        assert.ok(p.images!.images[0].device, 'the tiles are on the device');
      } finally {
        p.dispose();
      }
      const r = await dev.generate({ ...req, maxNewTokens: 12 });
      assert.deepEqual(r.tokens, [...(await ref.i32('greedy_ids'))]);
    } finally {
      await ref.close();
    }
  });

  it('two images of other shapes, tiles written one vision group at a time: the same logits as host pixels', async () => {
    const wide = await sharp({ create: { width: 200, height: 30, channels: 3, background: { r: 200, g: 40, b: 90 } } }).png().toBuffer();
    const tall = noise(10, 77, 4, 3);
    const messages = [{ role: 'user', content: [{ type: 'image' as const }, { type: 'text' as const, text: 'and' }, { type: 'image' as const }, { type: 'text' as const, text: '?' }] }];
    const a = await cpu.prepare({ messages, images: [wide, tall] });
    const b = await dev.prepare({ messages, images: [wide, tall] });
    try {
      assert.deepEqual(b.ids, a.ids);
      const logits = [];
      for (const [pipe, p] of [[cpu, a], [dev, b]] as const) {
        // Groups of 2 tiles: a group holds the end of one image and the start of the next.
        const step = await pipe.model.forward(p.ids, p.images, { logits: 'last', limits: { visionTiles: 2 } });
        assert.ok(step.split.visionGroups >= 3, `${step.split.visionGroups} vision groups`);
        logits.push(await step.logits());
      }
      assert.deepEqual(logits[1], logits[0]);
    } finally {
      a.dispose();
      b.dispose();
    }
  });

  it('the next turn reuses the cache by the device images\' keys, and a different image is not reused', async () => {
    const img = noise(70, 40, 3, 9);
    const other = noise(70, 40, 3, 10);
    const messages = [{ role: 'user', content: [{ type: 'image' as const }, { type: 'text' as const, text: 'Hi?' }] }];
    const first = await dev.generate({ messages, images: [img], maxNewTokens: 2 });
    const next = [...messages, { role: 'assistant', content: first.text }, { role: 'user', content: 'More?' }];
    const reused = await dev.generate({ messages: next, images: [img], maxNewTokens: 2 });
    assert.ok(reused.timings.reusedTokens >= first.timings.promptTokens, `${reused.timings.reusedTokens} of ${first.timings.promptTokens} reused`);
    assert.equal(reused.timings.imageEncodeMs, 0);
    const changed = await dev.generate({ messages: next, images: [other], maxNewTokens: 2 });
    assert.ok(changed.timings.reusedTokens < first.timings.promptTokens, `${changed.timings.reusedTokens} reused with another image`);
    // And the replies equal the host path's.
    const host = await cpu.generate({ messages: next, images: [other], maxNewTokens: 2, reusePrefix: false });
    assert.deepEqual(changed.tokens, host.tokens);
  });

  it('a model given bare device tiles refuses a mixed or mis-sized batch', async () => {
    const gpu = await testGpu();
    const model = await SmolVLM.load(gpu, join(FIXTURES, 'smolvlm-tiny'));
    try {
      const d = await DeviceImage.create(gpu, noise(20, 20, 3, 1), await loadAnyImageProcessorConfig(join(FIXTURES, 'llava-tiny')));
      try {
        const layout = { ...imageLayout(d), device: d };
        assert.throws(() => model.imageBatch({ pixels: new Float32Array(0), images: [layout] }), /device tiles are 1 of 48×48.*takes 64×64/);
        assert.throws(() => model.imageBatch({ pixels: new Float32Array(0), images: [layout, imageLayout(d)] }), /on the device for 1 of 2 images/);
      } finally {
        d.dispose();
      }
    } finally {
      model.dispose();
    }
  });
});
