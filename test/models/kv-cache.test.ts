// Decoding with the KV cache equals recomputing the whole sequence at every step.
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { assertClose, testGpu } from '../helpers.ts';
import { FIXTURES, openReference } from '../reference.ts';
import { SmolVLM } from '../../src/models/smolvlm.ts';
import { greedy } from '../../src/generate.ts';

it('KV-cache decoding matches full recomputation at every step', async () => {
  const gpu = await testGpu();
  const dir = join(FIXTURES, 'smolvlm-tiny');
  const model = await SmolVLM.load(gpu, dir);
  const ref = await openReference(join(dir, 'reference.safetensors'));
  try {
    const ids = [...(await ref.i32('input_ids'))];
    const pixels = (await ref.f32('pixel_values')).data;
    const steps: { token: number; logits: Float32Array }[] = [];
    for await (const s of greedy(model, ids, pixels, { maxNewTokens: 10, stopAtEos: false, withLogits: true })) {
      steps.push({ token: s.token, logits: s.logits! });
    }
    assert.equal(steps.length, 10);
    let prefix = ids;
    for (const [j, s] of steps.entries()) {
      // Full recomputation of prompt + the j tokens generated so far, from an empty cache.
      const step = await model.forward(prefix, pixels, { logits: 'last' });
      const full = await step.logits();
      // Same f32 math in another order (tiled matmul vs gemv, one vs many keys per pass).
      assertClose(s.logits, full, { atol: 1e-5 }, `step ${j} logits, cache vs recompute`);
      assert.equal(s.token, await step.token(), `step ${j} token`);
      prefix = [...prefix, s.token];
    }
  } finally {
    model.dispose();
    await ref.close();
  }
});
