// Long runs and device loss: 2,000 decode steps allocate nothing after the first step, repeated
// load → generate → dispose returns every buffer, and a device lost mid-generation makes generate()
// reject with a clear error while a fresh load afterwards works.
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { FIXTURES } from '../reference.ts';
import { testGpu } from '../helpers.ts';
import { Gpu } from '../../src/gpu/device.ts';
import { SmolVLM } from '../../src/models/smolvlm.ts';
import { greedy } from '../../src/generate.ts';
import { loadModel } from '../../src/pipeline.ts';

const DIR = join(FIXTURES, 'smolvlm-tiny');

it('2,000 decode steps: the live GPU buffer count stays constant after the first decode step', async () => {
  const gpu = await testGpu();
  const model = await SmolVLM.load(gpu, DIR);
  try {
    let first = -1;
    let n = 0;
    for await (const _ of greedy(model, [257, 85, 115, 306, 58, 32], null, { maxNewTokens: 2000, stopAtEos: false })) {
      const live = gpu.pool.liveCount;
      // Step 0 is the prefill; step 1 compiles the one-token decode plan, reused from then on.
      if (n === 1) first = live;
      else if (n > 1)
        assert.equal(live, first, `step ${n}: ${live} live buffers, ${first} after the first decode step`);
      n++;
    }
    assert.equal(n, 2000);
  } finally {
    model.dispose();
  }
});

it('20 rounds of load → generate → dispose leave no buffer behind', async () => {
  const gpu = await testGpu();
  const base = gpu.pool.liveCount;
  for (let round = 0; round < 20; round++) {
    const pipe = await loadModel(DIR, { gpu });
    const r = await pipe.generate({ prompt: 'Hi', images: [], maxNewTokens: 3 });
    assert.equal(r.tokens.length, 3);
    pipe.dispose();
    assert.equal(gpu.pool.liveCount, base, `round ${round}`);
  }
});

it('a device lost mid-generation rejects generate() clearly; a fresh load then works', async () => {
  const gpu = await Gpu.create();
  const pipe = await loadModel(DIR, { gpu });
  const gen = pipe.generate({ prompt: 'Hi', maxNewTokens: 50 });
  let n = 0;
  await assert.rejects(
    (async () => {
      for await (const _ of gen) if (++n === 3) gpu.device.destroy(); // what a driver reset looks like to us
    })(),
    (e: Error) => {
      assert.match(e.message, /device (was lost|was destroyed)|GPU device was lost/i);
      assert.match(e.message, /load the model again/);
      return true;
    },
  );
  gpu.destroy();
  const fresh = await loadModel(DIR);
  try {
    assert.equal((await fresh.generate({ prompt: 'Hi', maxNewTokens: 2 })).tokens.length, 2);
  } finally {
    fresh.dispose();
  }
});
