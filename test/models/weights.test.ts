// WeightStore.stackRows: Llama's q, k and v weights stacked into one [Nq + Nk + Nv, K] tensor after
// upload, either copied into one buffer or, when that cannot be, kept as the parts' chunks side by side.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Rng, encode, testGpu, assertClose } from '../helpers.ts';
import { writeSafetensors } from '../../src/io/safetensors-write.ts';
import { Checkpoint } from '../../src/io/checkpoint.ts';
import { WeightStore } from '../../src/models/weights.ts';
import type { SourceDType } from '../../src/models/storage.ts';

const K = 40;
const PARTS: [string, number][] = [
  ['q', 30],
  ['k', 10],
  ['v', 10],
];

async function stacked(dtype: SourceDType, cap?: number) {
  const gpu = await testGpu(cap ? { maxStorageBufferBindingSize: cap } : {});
  const rng = new Rng(3);
  const dir = mkdtempSync(join(tmpdir(), 'stack-'));
  try {
    const values = PARTS.map(([, n]) => encode(rng.array(n * K), dtype));
    writeFileSync(join(dir, 'config.json'), '{}');
    writeSafetensors(
      join(dir, 'model.safetensors'),
      PARTS.map(([name, n], i) => ({ name: `${name}.weight`, dtype, shape: [n, K], data: values[i].bytes })),
    );
    const ckpt = await Checkpoint.open(dir);
    const store = new WeightStore(gpu, ckpt, 'f32');
    try {
      const parts = PARTS.map(([name, n]) => store.get(`${name}.weight`, [n, K]));
      const t = store.stackRows('qkv.weight', parts);
      await store.load();
      assert.deepEqual(t.shape, [50, K]);
      for (const p of parts) assert.equal(p.chunks, undefined, `${p.name} still holds data after stacking`);
      // Read the stack back chunk by chunk, in row order.
      const got = new Float32Array(50 * K);
      for (const c of t.chunks!) got.set(await gpu.pool.readF32(c.buffer, c.rows * K), c.row0 * K);
      const want = new Float64Array(50 * K);
      let off = 0;
      for (const v of values) {
        want.set(v.rounded, off);
        off += v.rounded.length;
      }
      assertClose(got, want, { atol: 0 }, `stacked rows (${dtype})`);
      return t.chunks!.length;
    } finally {
      store.dispose();
      await ckpt.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('WeightStore.stackRows', () => {
  for (const dtype of ['F32', 'BF16'] as SourceDType[]) {
    it(`copies q, k and v (${dtype}) into one buffer`, async () => {
      assert.equal(await stacked(dtype), 1);
    });
  }
  it('keeps the parts side by side when the stack would exceed a binding (4 KiB cap)', async () => {
    // 50 rows × 160 bytes = 8000 bytes > 4096; each part is split into chunks of 25 rows at most.
    assert.ok((await stacked('F32', 4096)) >= 3);
  });
});
