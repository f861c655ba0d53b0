// KV-prefix reuse: a prompt that extends what the KV cache holds (the same conversation one turn later)
// prefills only the new tokens, and its reply equals a full recompute; a prompt whose image differs reuses
// nothing from that image on; the cache keeps what it holds when it grows.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { assertClose, testGpu } from '../helpers.ts';
import { FIXTURES, openReference } from '../reference.ts';
import { loadModelDir } from '../../src/models/registry.ts';
import { generateTokens } from '../../src/generate.ts';
import type { VisionLanguageModel } from '../../src/models/vlm.ts';

/** Greedy tokens and logits of a prompt, and how many prompt tokens the cache already held. */
async function run(model: VisionLanguageModel, ids: number[], pixels: Float32Array | null, maxNewTokens: number, reusePrefix: boolean) {
  let reused = -1;
  const tokens: number[] = [];
  const logits: Float32Array[] = [];
  for await (const s of generateTokens(model, ids, pixels, { maxNewTokens, stopAtEos: false, withLogits: true, reusePrefix, onReuse: (n) => (reused = n) })) {
    tokens.push(s.token);
    logits.push(s.logits!);
  }
  return { tokens, logits, reused };
}

for (const name of ['smolvlm-tiny', 'llava-tiny']) {
  describe(`${name}: KV-prefix reuse`, () => {
    let model: VisionLanguageModel;
    let ids: number[];
    let pixels: Float32Array;
    before(async () => {
      model = await loadModelDir(await testGpu(), join(FIXTURES, name));
      const ref = await openReference(join(FIXTURES, name, 'reference.safetensors'));
      ids = [...(await ref.i32('input_ids'))];
      pixels = (await ref.f32('pixel_values')).data;
      await ref.close();
    });
    after(() => model?.dispose());

    it('a second turn prefills only its new tokens and gives the tokens and logits of a full recompute', async () => {
      const first = await run(model, ids, pixels, 6, true);
      // The next turn: the prompt, the reply so far, then a few more tokens (the new user message).
      const turn2 = [...ids, ...first.tokens, 11, 12, 13];
      const reused = await run(model, turn2, pixels, 8, true);
      // Every token run before is held except the last generated one, which was never fed back.
      assert.equal(reused.reused, ids.length + first.tokens.length - 1);
      const full = await run(model, turn2, pixels, 8, false);
      assert.equal(full.reused, 0);
      assert.deepEqual(reused.tokens, full.tokens);
      reused.logits.forEach((l, j) => assertClose(l, full.logits[j], { atol: 1e-5 }, `${name} step ${j} logits, reused vs recomputed`));
    });

    it('the same prompt again runs only its last token', async () => {
      await run(model, ids, pixels, 2, true);
      const again = await run(model, ids, pixels, 4, true);
      assert.equal(again.reused, ids.length - 1);
      const full = await run(model, ids, pixels, 4, false);
      assert.deepEqual(again.tokens, full.tokens);
    });

    it('a different image ends the reuse at its first placeholder', async () => {
      await run(model, ids, pixels, 2, true);
      const other = pixels.map((x, i) => (i % 7 === 0 ? -x : x));
      const changed = await run(model, ids, other, 4, true);
      assert.equal(changed.reused, ids.indexOf(model.imageTokenId));
      const full = await run(model, ids, other, 4, false);
      assert.deepEqual(changed.tokens, full.tokens);
      // A text-only prompt that shares the text before the image reuses that text only.
      const text = ids.slice(0, ids.indexOf(model.imageTokenId));
      const t = await run(model, [...text, 5, 6], null, 2, true);
      assert.equal(t.reused, text.length);
    });

    it('a generated image token is text in the next step, not a placeholder without an image', async () => {
      await run(model, ids, pixels, 1, true);
      const img = model.imageTokenId;
      await assert.rejects(model.forward([img], null, { pos: ids.length }), /the prompt has 1 image tokens/);
      const step = await model.forward([img], null, { pos: ids.length, generated: true });
      assert.ok(Number.isInteger(await step.token()));
      // The image before it is still held: a next turn with the same prompt reuses all of it.
      const next = await run(model, [...ids, 7], pixels, 2, true);
      assert.equal(next.reused, ids.length);
    });

    it('what the cache holds survives its growth', async () => {
      await run(model, ids, pixels, 2, true);
      // More new tokens than the cache has room for (it starts at 64 positions): it grows, copying what it holds.
      const n = model.textConfig.max_position_embeddings - ids.length - 1;
      assert.ok(ids.length + 1 + n > 64, 'the second call needs a larger cache');
      const long = await run(model, [...ids, 9], pixels, n, true);
      assert.equal(long.reused, ids.length);
      const full = await run(model, [...ids, 9], pixels, n, false);
      assert.deepEqual(long.tokens, full.tokens);
    });
  });
}
