// `npm run demo` (src/demo.ts): exit 0 on the tiny SmolVLM fixture that package.json names, exit 2
// without a model, exit 1 when a logit is NaN, which the logit check counts as an infinite error (and
// which greedy decoding picks, as torch.argmax does).
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { FIXTURES, openReference } from '../reference.ts';
import { SafetensorsFile } from '../../src/io/safetensors.ts';
import { writeSafetensors } from '../../src/io/safetensors-write.ts';
import { readJsonObject } from '../../src/io/model-dir.ts';

const DEMO = fileURLToPath(new URL('../../src/demo.ts', import.meta.url));
const demo = (...args: string[]) => spawnSync(process.execPath, ['--import', 'tsx', DEMO, ...args], { encoding: 'utf8', timeout: 300_000 });
/** What `npm run demo` runs (package.json). */
const NPM_DEMO = ((await readJsonObject(fileURLToPath(new URL('../../package.json', import.meta.url)))) as { scripts: { demo: string } }).scripts.demo;

describe('the demo', () => {
  let tmp: string;
  before(() => {
    tmp = mkdtempSync(join(tmpdir(), 'demo-'));
  });
  after(() => rmSync(tmp, { recursive: true, force: true }));

  it('npm run demo runs the tiny SmolVLM fixture, and exits 0', () => {
    assert.equal(NPM_DEMO, 'tsx src/demo.ts --model test/fixtures/smolvlm-tiny');
    const r = demo('--model', join(FIXTURES, 'smolvlm-tiny'));
    assert.equal(r.status, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /greedy ids vs reference: identical/);
    assert.match(r.stdout, /max \|Δlogit\| vs reference \(all \d+ positions\): \d\.\d\de-\d+\n/);
  });

  it('without --model, exits 2 with its usage', () => {
    const r = demo();
    assert.equal(r.status, 2, r.stdout + r.stderr);
    assert.match(r.stderr, /--model DIR is required/);
  });

  it('exits 1 when a logit is NaN, counting the NaNs; the NaN token is the argmax', async () => {
    const src = join(FIXTURES, 'smolvlm-tiny');
    const dir = join(tmp, 'nan-logit');
    cpSync(src, dir, { recursive: true });
    // A NaN row of lm_head for a token the reference never generates: that token's logit is NaN everywhere,
    // so every greedy step picks it (a NaN counts above every number). The last such token: the argmax
    // kernel's invocation that reads it has read numbers before it (the rule once depended on that).
    const ref = await openReference(join(src, 'reference.safetensors'));
    const generated = new Set(await ref.i32('greedy_ids'));
    await ref.close();
    const f = await SafetensorsFile.open(join(src, 'model.safetensors'));
    const [vocab, hidden] = f.tensors.get('lm_head.weight')!.shape;
    const row = [...Array(vocab).keys()].reverse().find((t) => !generated.has(t))!;
    assert.ok(row >= 256, 'the vocabulary is larger than the argmax workgroup');
    const tensors = [];
    for (const [name, info] of f.tensors) {
      const data = new Uint8Array(await f.read(name));
      if (name === 'lm_head.weight') new Float32Array(data.buffer, data.byteOffset + row * hidden * 4, hidden).fill(NaN);
      tensors.push({ name, dtype: info.dtype, shape: info.shape, data });
    }
    await f.close();
    writeSafetensors(join(dir, 'model.safetensors'), tensors, { format: 'pt' });
    const r = demo('--model', dir);
    assert.equal(r.status, 1, r.stdout + r.stderr);
    assert.match(r.stdout, new RegExp(`generated: (${row} )+\n`));
    assert.match(r.stdout, /greedy ids vs reference: DIFFERENT/);
    assert.match(r.stdout, /max \|Δlogit\| vs reference \(all (\d+) positions\): Infinity \(\1 NaN\)/);
  });
});
