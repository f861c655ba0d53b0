// The `diff` command: exit 0 on every fixture, non-zero with the first bad tensor named when a weight
// is perturbed.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { FIXTURES } from '../reference.ts';
import { SafetensorsFile } from '../../src/io/safetensors.ts';
import { writeSafetensors } from '../../src/io/safetensors-write.ts';

// The command from its sources (tsx compiles them as they load); test/package/ runs the built one as installed.
const BIN = ['--import', 'tsx', fileURLToPath(new URL('../../src/cli.ts', import.meta.url))];

function cli(...args: string[]) {
  return spawnSync(process.execPath, [...BIN, ...args], { encoding: 'utf8', timeout: 300_000 });
}

describe('webgpu-vlm diff', () => {
  for (const name of ['smolvlm-tiny', 'smolvlm-tiny-f16', 'smolvlm-tiny-bf16']) {
    it(`exits 0 on ${name}`, () => {
      const dir = join(FIXTURES, name);
      const r = cli('diff', '--model', dir, '--reference', join(dir, 'reference.safetensors'));
      assert.equal(r.status, 0, r.stdout + r.stderr);
      assert.match(r.stdout, /greedy_ids\s+\[16\].*ok/);
      assert.match(r.stdout, /every compared tensor is within tolerance/);
    });
  }

  let tmp: string;
  before(() => {
    tmp = mkdtempSync(join(tmpdir(), 'diff-'));
  });
  after(() => rmSync(tmp, { recursive: true, force: true }));

  for (const layout of ['current', 'legacy']) {
    it(`exits 0 on llava-tiny (${layout} layout)`, () => {
      const src = join(FIXTURES, 'llava-tiny');
      let dir = src;
      if (layout === 'legacy') {
        dir = join(tmp, 'llava-legacy');
        cpSync(src, dir, { recursive: true });
        cpSync(join(src, 'model-legacy.safetensors'), join(dir, 'model.safetensors'));
      }
      const r = cli('diff', '--model', dir, '--reference', join(src, 'reference.safetensors'));
      assert.equal(r.status, 0, r.stdout + r.stderr);
      for (const t of ['vision_hidden', 'projector_out', 'inputs_embeds', 'logits', 'greedy_logits']) {
        assert.match(r.stdout, new RegExp(`^${t}\\s.*\\sok`, 'm'), t);
      }
      assert.match(r.stdout, /greedy_ids\s+\[12\].*ok \(all equal\)/);
    });
  }

  it('exits 1 and names the first bad tensor when a vision weight is perturbed', async () => {
    const src = join(FIXTURES, 'smolvlm-tiny');
    const dir = join(tmp, 'perturbed');
    cpSync(src, dir, { recursive: true });
    // Add 1e-2 to one element of layer 1's fc2 weight: vision_embeddings and layer 0 stay exact.
    const f = await SafetensorsFile.open(join(src, 'model.safetensors'));
    const target = 'model.vision_model.encoder.layers.1.mlp.fc2.weight';
    const tensors = [];
    for (const [n, info] of f.tensors) {
      const data = new Uint8Array(await f.read(n));
      if (n === target) {
        const v = new Float32Array(data.buffer, data.byteOffset, data.byteLength / 4);
        v[5] += 1e-2;
      }
      tensors.push({ name: n, dtype: info.dtype, shape: info.shape, data });
    }
    await f.close();
    writeSafetensors(join(dir, 'model.safetensors'), tensors, { format: 'pt' });
    const r = cli('diff', '--model', dir, '--reference', join(src, 'reference.safetensors'));
    assert.equal(r.status, 1, r.stdout + r.stderr);
    assert.match(r.stdout, /layer1_vision .*FAIL ← first beyond tolerance/);
    assert.match(r.stdout, /layer0_vision .* ok/);
    assert.match(r.stdout, /diff: FAILED, first beyond tolerance: layer1_vision/);
  });

  it('rejects misuse with a usage message and exit 2', () => {
    const r = cli('diff', '--model', 'x');
    assert.equal(r.status, 2);
    assert.match(r.stderr, /--reference FILE is required/);
    const u = cli('frobnicate');
    assert.equal(u.status, 2);
    assert.match(u.stderr, /unknown command "frobnicate"/);
  });
});
