import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Checkpoint } from '../../src/io/checkpoint.ts';
import { LoadError, SafetensorsFile } from '../../src/io/safetensors.ts';
import { toFloat32 } from '../../src/io/decode.ts';
import { writeSafetensors } from '../../src/io/safetensors-write.ts';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'checkpoint-test-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

const FIXTURE_DIR = fileURLToPath(new URL('../fixtures/smolvlm-tiny/', import.meta.url));

let counter = 0;
/** A fresh model directory with a config.json (unless config === null). */
function modelDir(config: string | null = '{"model_type":"test"}'): string {
  const d = path.join(tmp, `model-${counter++}`);
  fs.mkdirSync(d);
  if (config !== null) fs.writeFileSync(path.join(d, 'config.json'), config);
  return d;
}

const f32 = (xs: number[]) => new Uint8Array(new Float32Array(xs).buffer);

/** Write a shard holding the named F32 tensors (each [2], values derived from the name). */
function shard(dir: string, file: string, names: string[]): void {
  fs.mkdirSync(path.dirname(path.join(dir, file)), { recursive: true });
  writeSafetensors(
    path.join(dir, file),
    names.map((name, i) => ({ name, dtype: 'F32' as const, shape: [2], data: f32([name.length, i]) })),
  );
}

function index(dir: string, body: unknown): void {
  fs.writeFileSync(path.join(dir, 'model.safetensors.index.json'), typeof body === 'string' ? body : JSON.stringify(body));
}

async function expectLoadError(dir: string, re: RegExp, file?: RegExp): Promise<void> {
  await assert.rejects(Checkpoint.open(dir), (e: unknown) => {
    assert.ok(e instanceof LoadError, `expected LoadError, got ${(e as Error)?.constructor?.name}: ${(e as Error)?.message}`);
    assert.match(e.message, re);
    if (file) {
      assert.match(e.file, file);
      assert.ok(e.message.includes(e.file), `message should name the file: ${e.message}`);
    }
    return true;
  });
}

describe('single-file checkpoint', () => {
  test('fixture directory', async () => {
    const ck = await Checkpoint.open(FIXTURE_DIR);
    try {
      assert.equal(ck.dir, path.resolve(FIXTURE_DIR));
      assert.equal(ck.config.model_type, 'idefics3');
      assert.equal((ck.config.text_config as Record<string, unknown>).hidden_size, 64);
      assert.equal(ck.tensors.size, 59);
      assert.deepEqual(ck.files, [path.join(path.resolve(FIXTURE_DIR), 'model.safetensors')]);
      const info = ck.get('model.text_model.embed_tokens.weight');
      assert.ok(info);
      assert.deepEqual(info.shape, [320, 64]);
      assert.equal(ck.get('nope'), undefined);

      const direct = await SafetensorsFile.open(path.join(FIXTURE_DIR, 'model.safetensors'));
      const a = await ck.read(info.name);
      const b = await direct.read(info.name);
      await direct.close();
      assert.deepEqual(a, b);
      assert.equal(toFloat32(info, a).length, 320 * 64);

      await assert.rejects(ck.read('nope'), (e: unknown) => e instanceof LoadError && /tensor "nope": no such tensor in checkpoint/.test(e.message));
    } finally {
      await ck.close();
    }
    await assert.rejects(ck.read('model.text_model.embed_tokens.weight'), /has been closed/);
  });

  test('model.safetensors is preferred over an index', async () => {
    const d = modelDir();
    shard(d, 'model.safetensors', ['a', 'b']);
    index(d, 'not json at all');
    const ck = await Checkpoint.open(d);
    assert.deepEqual([...ck.tensors.keys()], ['a', 'b']);
    await ck.close();
  });

  test('errors from the safetensors file propagate, naming it', async () => {
    const d = modelDir();
    fs.writeFileSync(path.join(d, 'model.safetensors'), new Uint8Array(5));
    await expectLoadError(d, /model\.safetensors: file is too short/, /model\.safetensors$/);
  });
});

describe('sharded checkpoint', () => {
  test('valid index with shards in the dir and a subdirectory', async () => {
    const d = modelDir();
    shard(d, 'model-00001-of-00003.safetensors', ['x.a', 'x.b']);
    shard(d, 'model-00002-of-00003.safetensors', ['y.a']);
    shard(d, 'sub/model-00003-of-00003.safetensors', ['z.a', 'z.bb']);
    // An in-directory symlink alias for shard 2 is fine and is opened once.
    fs.symlinkSync('model-00002-of-00003.safetensors', path.join(d, 'alias.safetensors'));
    index(d, {
      metadata: { total_size: 40 },
      weight_map: {
        'x.a': 'model-00001-of-00003.safetensors',
        'x.b': 'model-00001-of-00003.safetensors',
        'y.a': 'alias.safetensors',
        'z.a': 'sub/model-00003-of-00003.safetensors',
        'z.bb': './sub/model-00003-of-00003.safetensors',
      },
    });
    const ck = await Checkpoint.open(d);
    try {
      assert.equal(ck.tensors.size, 5);
      assert.equal(ck.files.length, 3);
      assert.equal(ck.config.model_type, 'test');
      assert.equal(ck.get('z.bb')!.file, path.join(d, 'sub/model-00003-of-00003.safetensors'));
      assert.deepEqual(Array.from(toFloat32(ck.get('z.bb')!, await ck.read('z.bb'))), [4, 1]);
      assert.deepEqual(Array.from(toFloat32(ck.get('y.a')!, await ck.read('y.a'))), [3, 0]);
      assert.deepEqual(Array.from(toFloat32(ck.get('x.b')!, await ck.read('x.b'))), [3, 1]);
    } finally {
      await ck.close();
    }
  });

  test('fixture split into two shards reads back identically', async () => {
    const d = modelDir();
    const src = await SafetensorsFile.open(path.join(FIXTURE_DIR, 'model.safetensors'));
    const names = [...src.tensors.keys()];
    const halves = [names.slice(0, 30), names.slice(30)];
    const weightMap: Record<string, string> = {};
    for (const [i, part] of halves.entries()) {
      const file = `model-0000${i + 1}-of-00002.safetensors`;
      const ts = [];
      for (const n of part) {
        const info = src.tensors.get(n)!;
        ts.push({ name: n, dtype: info.dtype, shape: info.shape, data: await src.read(n) });
        weightMap[n] = file;
      }
      writeSafetensors(path.join(d, file), ts);
    }
    index(d, { weight_map: weightMap });
    const ck = await Checkpoint.open(d);
    try {
      assert.equal(ck.tensors.size, 59);
      assert.equal(ck.files.length, 2);
      for (const n of names) assert.deepEqual(await ck.read(n), await src.read(n));
    } finally {
      await ck.close();
      await src.close();
    }
  });
});

describe('malformed checkpoints', () => {
  test('model directory does not exist', async () => {
    await expectLoadError(path.join(tmp, 'no-such-dir'), /no-such-dir: model directory does not exist/);
  });

  test('config.json missing', async () => {
    const d = modelDir(null);
    shard(d, 'model.safetensors', ['a']);
    await expectLoadError(d, /config\.json: config\.json is missing/, /config\.json$/);
  });

  test('config.json invalid JSON', async () => {
    const d = modelDir('{"model_type": ');
    shard(d, 'model.safetensors', ['a']);
    await expectLoadError(d, /config\.json: config\.json is not valid JSON/, /config\.json$/);
  });

  test('config.json not an object', async () => {
    const d = modelDir('[]');
    shard(d, 'model.safetensors', ['a']);
    await expectLoadError(d, /config\.json must be a JSON object, got an array/, /config\.json$/);
  });

  test('neither model.safetensors nor the index exists', async () => {
    const d = modelDir();
    await expectLoadError(
      d,
      new RegExp(`no checkpoint found: looked for model\\.safetensors and model\\.safetensors\\.index\\.json in ${d.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}, found neither`),
    );
  });

  test('index.json invalid JSON', async () => {
    const d = modelDir();
    index(d, '{"weight_map": {');
    await expectLoadError(d, /model\.safetensors\.index\.json is not valid JSON/, /index\.json$/);
  });

  test('index.json not an object', async () => {
    const d = modelDir();
    index(d, '"hello"');
    await expectLoadError(d, /model\.safetensors\.index\.json must be a JSON object, got string "hello"/, /index\.json$/);
  });

  test('index weight_map missing', async () => {
    const d = modelDir();
    index(d, { metadata: {} });
    await expectLoadError(d, /"weight_map" is missing; expected an object/, /index\.json$/);
  });

  test('index weight_map not an object', async () => {
    const d = modelDir();
    index(d, { weight_map: ['a.safetensors'] });
    await expectLoadError(d, /"weight_map" must be an object of tensor name -> shard file, got an array/);
  });

  test('index weight_map value not a string', async () => {
    const d = modelDir();
    index(d, { weight_map: { a: 3 } });
    await expectLoadError(d, /tensor "a": weight_map value must be a non-empty shard file name, got number 3/);
  });

  test('shard path with .. escaping the directory', async () => {
    const d = modelDir();
    shard(tmp, `outside-${counter}.safetensors`, ['a']);
    index(d, { weight_map: { a: `../outside-${counter}.safetensors` } });
    await expectLoadError(d, /tensor "a": shard path "\.\.\/outside-\d+\.safetensors" escapes the model directory/);
  });

  test('shard path escaping via a nested ..', async () => {
    const d = modelDir();
    fs.mkdirSync(path.join(d, 'sub'));
    index(d, { weight_map: { a: 'sub/../../x.safetensors' } });
    await expectLoadError(d, /shard path "sub\/\.\.\/\.\.\/x\.safetensors" escapes the model directory/);
  });

  test('absolute shard path', async () => {
    const d = modelDir();
    const abs = path.join(tmp, `abs-${counter}.safetensors`);
    shard(tmp, path.basename(abs), ['a']);
    index(d, { weight_map: { a: abs } });
    await expectLoadError(d, /tensor "a": shard path "\/.*abs-\d+\.safetensors" is absolute; expected a file name relative to/);
  });

  test('symlinked shard whose realpath leaves the directory', async () => {
    const d = modelDir();
    const outside = path.join(tmp, `target-${counter}.safetensors`);
    shard(tmp, path.basename(outside), ['a']);
    fs.symlinkSync(outside, path.join(d, 'model-00001-of-00001.safetensors'));
    index(d, { weight_map: { a: 'model-00001-of-00001.safetensors' } });
    await expectLoadError(d, /shard path "model-00001-of-00001\.safetensors" resolves \(via symlink\) to .*target-\d+\.safetensors, outside the model directory/);
  });

  test('symlinked subdirectory leaving the directory', async () => {
    const d = modelDir();
    const outsideDir = fs.mkdtempSync(path.join(tmp, 'outdir-'));
    shard(outsideDir, 's.safetensors', ['a']);
    fs.symlinkSync(outsideDir, path.join(d, 'linked'));
    index(d, { weight_map: { a: 'linked/s.safetensors' } });
    await expectLoadError(d, /shard path "linked\/s\.safetensors" resolves \(via symlink\) to .*outside the model directory/);
  });

  test('missing shard', async () => {
    const d = modelDir();
    shard(d, 'a.safetensors', ['a']);
    index(d, { weight_map: { a: 'a.safetensors', b: 'missing.safetensors' } });
    await expectLoadError(d, /tensor "b": shard "missing\.safetensors" does not exist: expected a file at .*missing\.safetensors/);
  });

  test('tensor listed in the index but absent from its shard', async () => {
    const d = modelDir();
    shard(d, 'a.safetensors', ['a']);
    index(d, { weight_map: { a: 'a.safetensors', ghost: 'a.safetensors' } });
    await expectLoadError(d, /tensor "ghost": tensor is listed in weight_map under shard a\.safetensors but is not present in that shard \(it has 1 tensors\)/);
  });

  test('tensor in a shard but mapped to another shard', async () => {
    const d = modelDir();
    shard(d, 'a.safetensors', ['a', 'b']);
    shard(d, 'b.safetensors', ['c']);
    index(d, { weight_map: { a: 'a.safetensors', b: 'b.safetensors', c: 'b.safetensors' } });
    await expectLoadError(d, /tensor "b": weight_map maps the tensor to b\.safetensors, but it is actually in shard a\.safetensors/);
  });

  test('tensor present in two shards', async () => {
    const d = modelDir();
    shard(d, 'a.safetensors', ['a', 'dup']);
    shard(d, 'b.safetensors', ['dup']);
    index(d, { weight_map: { a: 'a.safetensors', dup: 'b.safetensors' } });
    await expectLoadError(d, /tensor "dup": tensor appears in two shards: a\.safetensors and b\.safetensors/);
  });

  test('tensor present in a shard but not in weight_map', async () => {
    const d = modelDir();
    shard(d, 'a.safetensors', ['a', 'extra']);
    index(d, { weight_map: { a: 'a.safetensors' } });
    await expectLoadError(d, /tensor "extra": tensor is present in shard a\.safetensors but not listed in weight_map/);
  });

  test('malformed shard propagates its LoadError', async () => {
    const d = modelDir();
    const prefix = Buffer.alloc(8);
    prefix.writeBigUInt64LE(2n);
    fs.writeFileSync(path.join(d, 'bad.safetensors'), Buffer.concat([prefix, Buffer.from('[]')]));
    index(d, { weight_map: { a: 'bad.safetensors' } });
    await expectLoadError(d, /bad\.safetensors: header JSON must be an object/, /bad\.safetensors$/);
  });
});
