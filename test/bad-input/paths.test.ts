// A model folder cannot point outside itself: a model.safetensors that is a symlink to a file elsewhere
// is rejected like a shard that escapes (those cases are in test/io/checkpoint.test.ts); the Hugging
// Face cache's links into its own blobs/ are allowed only through an explicit root.
import { it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FIXTURES } from '../reference.ts';
import { Checkpoint } from '../../src/io/checkpoint.ts';

let tmp: string;
before(() => {
  tmp = mkdtempSync(join(tmpdir(), 'paths-'));
});
after(() => rmSync(tmp, { recursive: true, force: true }));

it('rejects a model.safetensors symlink that leaves the model folder, accepts it inside an explicit root', async () => {
  const outside = join(tmp, 'elsewhere');
  const model = join(tmp, 'repo', 'snap');
  mkdirSync(outside);
  mkdirSync(model, { recursive: true });
  copyFileSync(join(FIXTURES, 'smolvlm-tiny', 'model.safetensors'), join(outside, 'weights.bin'));
  copyFileSync(join(FIXTURES, 'smolvlm-tiny', 'config.json'), join(model, 'config.json'));
  symlinkSync(join(outside, 'weights.bin'), join(model, 'model.safetensors'));
  await assert.rejects(Checkpoint.open(model), /model\.safetensors: resolves \(via symlink\) to .*elsewhere\/weights\.bin, outside the model directory/);
  // With the root one level up (as for a Hugging Face cache repo), a link into it is fine...
  await assert.rejects(Checkpoint.open(model, { root: join(tmp, 'repo') }), /outside the model directory/);
  const ck = await Checkpoint.open(model, { root: tmp });
  assert.equal(ck.tensors.size, 59);
  await ck.close();
});
