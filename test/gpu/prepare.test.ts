// Pipelines are made at load: after loading a model, a prompt with one image and the decode steps after
// it create no pipeline of their own, with either kernel set; preparing again makes none.
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { testGpu } from '../helpers.ts';
import { FIXTURES, openReference } from '../reference.ts';
import { loadModelDir } from '../../src/models/registry.ts';
import { greedy } from '../../src/generate.ts';

for (const name of ['smolvlm-tiny', 'llava-tiny']) {
  for (const kernels of ['gpu', 'cpu'] as const) {
    it(`${name}, ${kernels} kernels: the first prompt and its decode steps use only pipelines made at load`, async () => {
      const gpu = await testGpu();
      const before = gpu.pipelines.size;
      const model = await loadModelDir(gpu, join(FIXTURES, name), { kernels });
      const ref = await openReference(join(FIXTURES, name, 'reference.safetensors'));
      try {
        const atLoad = gpu.pipelines.size;
        assert.ok(atLoad > before || before > 0, 'loading made pipelines (or an earlier model on this device did)');
        const ids = await ref.i32('input_ids');
        const pixels = (await ref.f32('pixel_values')).data;
        let n = 0;
        for await (const _ of greedy(model, ids, pixels, { maxNewTokens: 4, stopAtEos: false })) n++;
        assert.equal(n, 4);
        assert.equal(gpu.pipelines.size, atLoad, `pipelines made after load: ${gpu.pipelines.size - atLoad}`);
        assert.equal(await model.preparePipelines(), 0, 'preparing again makes nothing');
      } finally {
        model.dispose();
        await ref.close();
      }
    });
  }
}
