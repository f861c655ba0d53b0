// LLaVA-NeXT against the llava-next-tiny reference (LLaVA's own anyres code + openai/CLIP + llama2.c):
// every intermediate (the packed image features included), logits at every position and the 12 greedy
// tokens, with both checkpoint layouts and both kernel sets; the whole chain from image.png and a chat
// to the reference's input_ids; the number of <image> tokens for many image sizes, worked by hand from
// transformers' formula; prefix reuse; and clear errors on bad configs, checkpoints and prompts.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, cpSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { assertClose, testGpu } from '../helpers.ts';
import { FIXTURES, batchPixels, checkTaps, openReference, referenceImages, type Reference } from '../reference.ts';
import { LlavaNext, anyresFeatures } from '../../src/models/llava-next.ts';
import { greedy } from '../../src/generate.ts';
import { loadModel, type VisionLanguagePipeline } from '../../src/pipeline.ts';
import { SafetensorsFile } from '../../src/io/safetensors.ts';
import { writeSafetensors } from '../../src/io/safetensors-write.ts';
import { readJsonObject } from '../../src/io/model-dir.ts';

// The fixture README's tolerance for f32 weights and f32 compute.
const TOL = 1e-4;
const TAPS = [
  'vision_embeddings',
  'vision_pre_layrnorm',
  'layer0_vision',
  'layer1_vision',
  'vision_hidden',
  'projector_out',
  'image_features_packed',
  'inputs_embeds',
  'layer0_text',
  'layer1_text',
  'text_final_norm',
  'logits',
];
const SRC = join(FIXTURES, 'llava-next-tiny');

let tmp: string;
let legacyDir: string;
before(() => {
  tmp = mkdtempSync(join(tmpdir(), 'llava-next-'));
  legacyDir = join(tmp, 'legacy');
  cpSync(SRC, legacyDir, { recursive: true });
  copyFileSync(join(SRC, 'model-legacy.safetensors'), join(legacyDir, 'model.safetensors'));
});
after(() => rmSync(tmp, { recursive: true, force: true }));

for (const [layout, other] of [['current', false], ['legacy', false], ['current', true]] as const) {
  describe(`llava-next-tiny, ${layout} layout${other ? ', the other kernel set' : ''}`, () => {
    let model: LlavaNext;
    let ref: Reference;
    before(async () => {
      const gpu = await testGpu();
      const kernels = other ? (gpu.tuning.target === 'cpu' ? 'gpu' : 'cpu') : undefined;
      model = await LlavaNext.load(gpu, layout === 'current' ? SRC : legacyDir, { kernels });
      ref = await openReference(join(SRC, 'reference.safetensors'));
    });
    after(async () => {
      model?.dispose();
      await ref?.close();
    });

    it('detects the layout and lays the image out as the reference (1 × 2 grid + base, 102 features)', async () => {
      assert.equal(model.layout, layout);
      assert.deepEqual(model.imageLayout(38, 62), { tiles: 3, rows: 1, cols: 2, height: 38, width: 62 });
      assert.equal(model.placeholders(model.imageLayout(38, 62)), 102);
    });

    it('matches every intermediate, the packed features and the logits at every position', async () => {
      console.log(await checkTaps(model, ref, TAPS, TOL, `llava-next-tiny (${layout})`));
    });

    it('generates the 12 greedy tokens with the KV cache', async () => {
      const ids = await ref.i32('input_ids');
      const want = await ref.i32('greedy_ids');
      const wantLogits = (await ref.f32('greedy_logits')).data;
      const V = model.textConfig.vocab_size;
      const got: number[] = [];
      for await (const s of greedy(model, ids, await referenceImages(model, ref), { maxNewTokens: want.length, stopAtEos: false, withLogits: true })) {
        assertClose(s.logits!, wantLogits.subarray(got.length * V, (got.length + 1) * V), { atol: TOL }, `greedy_logits row ${got.length}`);
        got.push(s.token);
      }
      assert.deepEqual(got, [...want]);
    });
  });
}

describe('llava-next-tiny through loadModel', () => {
  let pipe: VisionLanguagePipeline;
  before(async () => {
    pipe = await loadModel(SRC, { gpu: await testGpu() });
  });
  after(() => pipe?.dispose());

  it('turns image.png and the chat into the reference input_ids and pixel_values, and answers with its tokens', async () => {
    const ref = await openReference(join(SRC, 'reference.safetensors'));
    try {
      const messages = [{ role: 'user', content: [{ type: 'image' as const }, { type: 'text' as const, text: 'Hi?' }] }];
      const images = [join(SRC, 'image.png')];
      const p = await pipe.prepare({ messages, images });
      assert.deepEqual(p.ids, [...(await ref.i32('input_ids'))]);
      assertClose(await batchPixels(p.images!), (await ref.f32('pixel_values')).data, { atol: 1e-6 }, 'pixel_values');
      assert.deepEqual(p.images!.images.map(({ device: _, ...layout }) => layout), [{ tiles: 3, rows: 1, cols: 2, height: 38, width: 62 }]);
      p.dispose();
      const r = await pipe.generate({ messages, images, maxNewTokens: 12 });
      assert.deepEqual(r.tokens, [...(await ref.i32('greedy_ids'))]);
    } finally {
      await ref.close();
    }
  });

  it('gives each image of a prompt its own token count, and the next turn reuses the cache', async () => {
    // Two images of other shapes in one prompt: each is expanded by its own grid and size.
    const wide = await sharp({ create: { width: 200, height: 30, channels: 3, background: { r: 200, g: 40, b: 90 } } }).png().toBuffer();
    const tall = await sharp({ create: { width: 10, height: 7, channels: 3, background: { r: 10, g: 140, b: 60 } } }).png().toBuffer();
    const messages = [{ role: 'user', content: [{ type: 'image' as const }, { type: 'text' as const, text: 'and' }, { type: 'image' as const }, { type: 'text' as const, text: '?' }] }];
    const p = await pipe.prepare({ messages, images: [wide, tall] });
    p.dispose();
    const counts = p.images!.images.map((im) => pipe.model.placeholders(im));
    assert.equal(p.ids.filter((id) => id === pipe.model.imageTokenId).length, counts[0] + counts[1]);
    // Worked by hand below (200×30 → [48, 144] → 1 × 3; 10×7 → [48, 96] → 1 × 2).
    assert.deepEqual(counts, [36 + 2 * 19, 90]);
    const first = await pipe.generate({ messages, images: [wide, tall], maxNewTokens: 3 });
    const next = [...messages, { role: 'assistant', content: first.text }, { role: 'user', content: 'More?' }];
    const reused = await pipe.generate({ messages: next, images: [wide, tall], maxNewTokens: 4 });
    assert.ok(reused.timings.reusedTokens >= first.timings.promptTokens, `${reused.timings.reusedTokens} reused`);
    const full = await pipe.generate({ messages: next, images: [wide, tall], maxNewTokens: 4, reusePrefix: false });
    assert.deepEqual(reused.tokens, full.tokens);
  });
});

describe('<image> tokens per image (LlavaNextProcessor._get_number_of_features), worked by hand', () => {
  // side = patches along a crop. The fixture: 48-pixel crops of 8-pixel patches (side 6); the published
  // llava-v1.6-mistral-7b-hf: 336-pixel crops of 14-pixel patches (side 24).
  const cases: [string, number, number, number, number, number, number][] = [
    // [what, height, width, grid rows, grid cols, side, expected]
    ['the fixture: 62×38 → 1×2, un-padded 6 × 10 (+6 newlines) + 36', 38, 62, 1, 2, 6, 102],
    ['a square in a 1×2 grid: 6 columns kept of 12 (pad 3 each side)', 48, 48, 1, 2, 6, 36 + 6 * 7],
    ['10×7, smaller than a crop: new width int(10·6/7) = 8, pad 2', 7, 10, 1, 2, 6, 36 + 6 * 9],
    ['200×30 in a 1×3 grid: new height int(round(30·18/200, 7)) = 2, pad 2: 2 rows kept', 30, 200, 1, 3, 6, 36 + 2 * 19],
    ['672×672 published: 2×2 grid, nothing un-padded: 576 + 48·49', 672, 672, 2, 2, 24, 2928],
    ['1200×800 (W×H) published: 2×2, new height 32, pad 8: 32 rows of 48 + newlines', 800, 1200, 2, 2, 24, 576 + 32 * 49],
    ['2000×20 published in 1×3: new height int(20·72/2000) = 0: no grid row kept', 20, 2000, 1, 3, 24, 576],
    ['a tall 336×1008 (W×H) in 3×1: nothing un-padded', 1008, 336, 3, 1, 24, 576 + 72 * 25],
  ];
  for (const [what, h, w, rows, cols, side, want] of cases) {
    it(what, () => assert.equal(anyresFeatures(h, w, rows, cols, side), want));
  }
});

describe("Mistral's sliding window", () => {
  it('a window of 16: the cache-decoded logits equal full recomputes, and differ from attending to everything', async () => {
    const dir = join(tmp, 'window16');
    cpSync(SRC, dir, { recursive: true });
    const config = (await readJsonObject(join(SRC, 'config.json'))) as { text_config: Record<string, unknown> };
    config.text_config.sliding_window = 16;
    writeFileSync(join(dir, 'config.json'), JSON.stringify(config));
    const gpu = await testGpu();
    const [windowed, plain] = [await LlavaNext.load(gpu, dir), await LlavaNext.load(gpu, SRC)];
    const ref = await openReference(join(SRC, 'reference.safetensors'));
    try {
      assert.equal(windowed.text.layers[0].self_attn.window, 16);
      const ids = [...(await ref.i32('input_ids'))];
      const images = await referenceImages(windowed, ref);
      const steps: { token: number; logits: Float32Array }[] = [];
      for await (const s of greedy(windowed, ids, images, { maxNewTokens: 5, stopAtEos: false, withLogits: true })) steps.push({ token: s.token, logits: s.logits! });
      let prefix = ids;
      for (const [j, s] of steps.entries()) {
        // The whole sequence again from position 0 (122 + j tokens, each query seeing its last 16).
        const full = await windowed.forward(prefix, images, { logits: 'last' });
        assertClose(s.logits, await full.logits(), { atol: 1e-5 }, `step ${j}, cache vs recompute under the window`);
        prefix = [...prefix, s.token];
      }
      const all = await (await plain.forward(ids, images, { logits: 'last' })).logits();
      const win = await (await windowed.forward(ids, images, { logits: 'last' })).logits();
      assert.ok(all.some((x, i) => Math.abs(x - win[i]) > 1e-3), 'a 16-position window changes the last logits of a 122-token prompt');
    } finally {
      windowed.dispose();
      plain.dispose();
      await ref.close();
    }
  });
});

describe('bad LLaVA-NeXT inputs', () => {
  /** A copy of the fixture with config.json edited, or tensors dropped. */
  async function variant(name: string, editConfig: (c: Record<string, unknown>) => void, drop?: RegExp): Promise<string> {
    const dir = join(tmp, name);
    cpSync(SRC, dir, { recursive: true });
    const config = await readJsonObject(join(SRC, 'config.json'));
    editConfig(config);
    writeFileSync(join(dir, 'config.json'), JSON.stringify(config));
    if (drop) {
      const f = await SafetensorsFile.open(join(SRC, 'model.safetensors'));
      const out = [];
      for (const [n, info] of f.tensors) if (!drop.test(n)) out.push({ name: n, dtype: info.dtype, shape: [...info.shape], data: await f.read(n) });
      await f.close();
      writeSafetensors(join(dir, 'model.safetensors'), out, { format: 'pt' });
    }
    for (const f of readdirSync(dir)) if (f.startsWith('model-legacy')) rmSync(join(dir, f));
    return dir;
  }

  it('names a malformed image_grid_pinpoints', async () => {
    for (const [bad, msg] of [
      [[], /"image_grid_pinpoints" must be a non-empty list/],
      [[[48, 0]], /must hold \[height, width\] pairs of positive integers/],
      [[[48, 96, 48]], /must hold \[height, width\] pairs/],
      [[[50, 96]], /must be multiples of the vision tower's image_size 48 \(50×96 is not\)/],
    ] as const) {
      const dir = await variant(`pinpoints-${JSON.stringify(bad).replace(/\W/g, '')}`, (c) => (c.image_grid_pinpoints = bad));
      await assert.rejects(LlavaNext.load(await testGpu(), dir), msg);
    }
  });

  it('names an unknown vision_feature_select_strategy, and refuses "full", which anyres cannot pack', async () => {
    const unknown = await variant('strategy-cls', (c) => (c.vision_feature_select_strategy = 'cls'));
    await assert.rejects(LlavaNext.load(await testGpu(), unknown), /vision_feature_select_strategy "cls" is not supported/);
    const full = await variant('strategy-full', (c) => (c.vision_feature_select_strategy = 'full'));
    await assert.rejects(LlavaNext.load(await testGpu(), full), /vision_feature_select_strategy "full" cannot be packed by anyres/);
  });

  it('lists a missing image_newline', async () => {
    const dir = await variant('no-newline', () => {}, /image_newline/);
    await assert.rejects(LlavaNext.load(await testGpu(), dir), /missing tensor model\.image_newline/);
  });

  it('checks the placeholder count against the packed features, and refuses tiles without their layout', async () => {
    const model = await LlavaNext.load(await testGpu(), SRC);
    const ref = await openReference(join(SRC, 'reference.safetensors'));
    try {
      const ids = [...(await ref.i32('input_ids'))];
      const images = await referenceImages(model, ref);
      const short = ids.filter((id, i) => !(id === model.imageTokenId && i === ids.indexOf(id)));
      await assert.rejects(model.forward(short, images), /the prompt has 101 image tokens \(id 259\) but 3 image tile\(s\) give 102 features \(1 image\(s\): 102\)/);
      await assert.rejects(model.forward(ids, (await ref.f32('pixel_values')).data), /LLaVA-NeXT packs each image by its crop grid and original size \(image_sizes\): got 1 tile\(s\), grid 0×0/);
    } finally {
      model.dispose();
      await ref.close();
    }
  });
});
