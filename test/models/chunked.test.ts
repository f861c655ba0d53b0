// Steps too large for one submission: on a device whose storage bindings are forced small, every fixture
// runs its vision encoder in groups of tiles and its prefill in chunks of tokens that append to the KV
// cache, and still matches its third-party reference (every intermediate, all-row logits, greedy tokens).
// Several tiles split into groups give the same logits as one graph, and a tile that cannot fit at all is
// a clear error.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { assertClose, testGpu, Rng } from '../helpers.ts';
import { FIXTURES, checkTaps, openReference, referenceImages, type Reference } from '../reference.ts';
import { SmolVLM } from '../../src/models/smolvlm.ts';
import { Llava } from '../../src/models/llava.ts';
import { LlavaNext } from '../../src/models/llava-next.ts';
import { greedy } from '../../src/generate.ts';
import type { VisionLanguageModel } from '../../src/models/vlm.ts';

// The fixtures' own tolerance: chunking changes which rows a submission holds, not the arithmetic.
const TOL = 1e-4;

// Each binding cap is just above the fixture's largest one-tile vision tensor (its pixel tile:
// 3·64·64·4 = 49,152 bytes for SmolVLM, 3·48·48·4 = 27,648 for LLaVA and LLaVA-NeXT), and below the
// step's all-row logits (55, 50 and 122 rows of 320·4 bytes): the prompt must be split, one tile must fit.
const RUNS = [
  { name: 'smolvlm-tiny', cap: 49_152, load: SmolVLM.load, taps: ['vision_embeddings', 'layer0_vision', 'vision_hidden', 'projector_out', 'inputs_embeds', 'layer0_text', 'layer1_text', 'text_final_norm', 'logits'] },
  { name: 'smolvlm-tiny-bf16', cap: 49_152, load: SmolVLM.load, taps: ['projector_out', 'inputs_embeds', 'text_final_norm', 'logits'] },
  { name: 'llava-tiny', cap: 32_768, load: Llava.load, taps: ['vision_embeddings', 'layer0_vision', 'vision_hidden', 'projector_out', 'inputs_embeds', 'layer0_text', 'text_final_norm', 'logits'] },
  // Three crops of 27,648 bytes: one per vision group.
  { name: 'llava-next-tiny', cap: 32_768, load: LlavaNext.load, taps: ['vision_embeddings', 'vision_hidden', 'projector_out', 'image_features_packed', 'inputs_embeds', 'layer1_text', 'logits'] },
] as const;

for (const run of RUNS) {
  describe(`${run.name} with maxStorageBufferBindingSize forced to ${run.cap} bytes`, () => {
    let model: VisionLanguageModel;
    let ref: Reference;
    before(async () => {
      model = await run.load(await testGpu({ maxStorageBufferBindingSize: run.cap }), join(FIXTURES, run.name));
      ref = await openReference(join(FIXTURES, run.name, 'reference.safetensors'));
    });
    after(async () => {
      model?.dispose();
      await ref?.close();
    });

    it('splits the prompt into chunks and matches every intermediate and the logits at every position', async () => {
      const ids = await ref.i32('input_ids');
      const images = await referenceImages(model, ref);
      const tiles = ref.names.includes('image_sizes') ? 3 : 1;
      const step = await model.forward(ids, images, { logits: 'all' });
      assert.equal(step.split.visionGroups, tiles, 'one vision group per tile');
      assert.ok(step.split.prefillChunks >= 2, `the prompt ran in ${step.split.prefillChunks} chunk(s), expected a split`);
      console.log(`${run.name}: ${step.split.prefillChunks} prefill chunks; ${await checkTaps(model, ref, [...run.taps], TOL, run.name)}`);
    });

    it('generates the reference greedy tokens after a chunked prefill', async () => {
      const ids = await ref.i32('input_ids');
      const want = [...(await ref.i32('greedy_ids'))];
      const got: number[] = [];
      for await (const s of greedy(model, ids, await referenceImages(model, ref), { maxNewTokens: want.length, stopAtEos: false })) got.push(s.token);
      assert.deepEqual(got, want);
    });
  });
}

describe('several tiles in vision groups, the prompt in chunks', () => {
  for (const name of ['smolvlm-tiny', 'llava-tiny'] as const) {
    it(`${name}: three tiles one at a time and a 7-token prefill chunk give the one-graph logits, progress in order`, async () => {
      const gpu = await testGpu();
      const model: VisionLanguageModel = name === 'llava-tiny' ? await Llava.load(gpu, join(FIXTURES, name)) : await SmolVLM.load(gpu, join(FIXTURES, name));
      const ref = await openReference(join(FIXTURES, name, 'reference.safetensors'));
      try {
        // The reference tile, then two random ones; the prompt has each tile's placeholders between words.
        const tile = (await ref.f32('pixel_values')).data;
        const rng = new Rng(11);
        const pixels = new Float32Array(tile.length * 3);
        pixels.set(tile);
        for (let i = tile.length; i < pixels.length; i++) pixels[i] = rng.next() * 2 - 1;
        const F = model.featuresPerTile;
        const img = model.imageTokenId;
        const ids = [1, 5, ...Array(F).fill(img), 6, 7, ...Array(F).fill(img), 8, ...Array(F).fill(img), 9, 10, 11];
        // LLaVA names projector_out for a single image only (its CLS row dropped), so it is compared for SmolVLM.
        const taps = name === 'smolvlm-tiny' ? ['projector_out', 'inputs_embeds', 'logits'] : ['inputs_embeds', 'logits'];
        const whole = await model.forward(ids, pixels, { logits: 'all', taps });
        assert.deepEqual(whole.split, { visionGroups: 0, prefillChunks: 1 }, 'one graph by default');
        const wantLogits = await whole.logits();
        const wantEmbeds = await whole.tap('inputs_embeds');
        const progress: string[] = [];
        const split = await model.forward(ids, pixels, {
          logits: 'all',
          taps,
          limits: { visionTiles: 1, prefillTokens: 7 },
          onProgress: (p) => progress.push(`${p.stage} ${p.done}/${p.total}`),
        });
        const chunks = Math.ceil(ids.length / 7);
        assert.deepEqual(split.split, { visionGroups: 3, prefillChunks: chunks });
        assert.deepEqual(progress, [
          'image 1/3',
          'image 2/3',
          'image 3/3',
          ...Array.from({ length: chunks }, (_, i) => `prefill ${Math.min(ids.length, (i + 1) * 7)}/${ids.length}`),
        ]);
        assertClose(await split.tap('inputs_embeds'), wantEmbeds, { atol: 1e-5 }, `${name} inputs_embeds, split vs one graph`);
        assertClose(await split.logits(), wantLogits, { atol: 1e-5 }, `${name} logits, split vs one graph`);
        assertClose(await split.tap('logits'), wantLogits, { atol: 1e-5 }, `${name} logits tap, split vs one graph`);
        if (taps.includes('projector_out')) {
          assertClose(await split.tap('projector_out'), await whole.tap('projector_out'), { atol: 1e-5 }, `${name} projector_out, split vs one graph`);
        }
        assert.equal(await split.token(), await whole.token());
      } finally {
        model.dispose();
        await ref.close();
      }
    });
  }

  it('a progress callback submits the vision encoder and the prefill apart, with the same results', async () => {
    const model = await SmolVLM.load(await testGpu(), join(FIXTURES, 'smolvlm-tiny'));
    const ref = await openReference(join(FIXTURES, 'smolvlm-tiny', 'reference.safetensors'));
    try {
      const ids = await ref.i32('input_ids');
      const progress: string[] = [];
      let last = 0;
      const step = await model.forward(ids, (await ref.f32('pixel_values')).data, {
        logits: 'all',
        onProgress: (p) => {
          assert.ok(p.elapsedMs >= last, 'elapsed time goes forward');
          last = p.elapsedMs;
          progress.push(`${p.stage} ${p.done}/${p.total}`);
        },
      });
      assert.deepEqual(step.split, { visionGroups: 1, prefillChunks: 1 });
      assert.deepEqual(progress, ['image 1/1', `prefill ${ids.length}/${ids.length}`]);
      assertClose(await step.logits(), (await ref.f32('logits')).data, { atol: TOL }, 'logits with progress');
    } finally {
      model.dispose();
      await ref.close();
    }
  });

  it('keeps the plans of the most recent prompt shapes only, so that buffers stay bounded', async () => {
    const gpu = await testGpu();
    const model = await SmolVLM.load(gpu, join(FIXTURES, 'smolvlm-tiny'));
    try {
      const live: number[] = [];
      let first: Awaited<ReturnType<typeof model.forward>> | undefined;
      for (let T = 2; T < 40; T++) {
        const step = await model.forward(Array.from({ length: T }, (_, i) => 1 + (i % 200)), null);
        first ??= step;
        live.push(gpu.pool.liveCount);
      }
      // 38 prompt lengths, 38 plans compiled; the buffers held stop growing once the oldest are dropped.
      assert.equal(live[live.length - 1], live[20], `live buffers after each prompt length: ${live.join(' ')}`);
      await assert.rejects(first!.token(), /belongs to a plan that was disposed/);
    } finally {
      model.dispose();
    }
  });

  it('a tile that cannot fit one binding is an error that says so', async () => {
    const model = await SmolVLM.load(await testGpu({ maxStorageBufferBindingSize: 40_000 }), join(FIXTURES, 'smolvlm-tiny'));
    const ref = await openReference(join(FIXTURES, 'smolvlm-tiny', 'reference.safetensors'));
    try {
      await assert.rejects(
        model.forward(await ref.i32('input_ids'), (await ref.f32('pixel_values')).data),
        /one image tile alone needs more activation memory than this device allows in one submission \(maxStorageBufferBindingSize 40000 bytes per tensor/,
      );
    } finally {
      model.dispose();
      await ref.close();
    }
  });
});
