import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { setFloat16 } from '@petamoriken/float16';
import { ITEM_SIZE, isStDType } from '../../src/io/dtype.ts';
import { LoadError, SafetensorsFile } from '../../src/io/safetensors.ts';
import { toFloat32, toInt32 } from '../../src/io/decode.ts';
import { encodeSafetensorsHeader, writeSafetensors } from '../../src/io/safetensors-write.ts';
import type { TensorInfo } from '../../src/io/safetensors.ts';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'safetensors-test-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

const fixture = (rel: string) => fileURLToPath(new URL(`../fixtures/${rel}`, import.meta.url));

let counter = 0;
function tmpPath(stem: string): string {
  return path.join(tmp, `${stem}-${counter++}.safetensors`);
}

/** Write a raw file: u64 length prefix (defaults to the header's byte length), header text, data bytes. */
function rawFile(stem: string, header: unknown, data: Uint8Array | number = 0, opts: { len?: bigint } = {}): string {
  const text = typeof header === 'string' ? header : JSON.stringify(header);
  const h = new TextEncoder().encode(text);
  const d = typeof data === 'number' ? new Uint8Array(data) : data;
  const prefix = new Uint8Array(8);
  new DataView(prefix.buffer).setBigUint64(0, opts.len ?? BigInt(h.length), true);
  const p = tmpPath(stem);
  fs.writeFileSync(p, Buffer.concat([prefix, h, d]));
  return p;
}

function writeBytes(stem: string, bytes: Uint8Array): string {
  const p = tmpPath(stem);
  fs.writeFileSync(p, bytes);
  return p;
}

async function expectLoadError(p: string, re: RegExp, opts?: { maxHeaderBytes?: number }): Promise<void> {
  await assert.rejects(SafetensorsFile.open(p, opts), (e: unknown) => {
    assert.ok(e instanceof LoadError, `expected LoadError, got ${(e as Error)?.constructor?.name}: ${(e as Error)?.message}`);
    assert.equal(e.file, path.resolve(p));
    assert.ok(e.message.includes(path.resolve(p)), `message should name the file: ${e.message}`);
    assert.match(e.message, re);
    return true;
  });
}

const f32 = (xs: number[]) => new Uint8Array(new Float32Array(xs).buffer);

describe('dtype', () => {
  test('item sizes and isStDType', () => {
    assert.equal(ITEM_SIZE.F32, 4);
    assert.equal(ITEM_SIZE.BF16, 2);
    assert.equal(ITEM_SIZE.I64, 8);
    assert.equal(ITEM_SIZE.BOOL, 1);
    assert.ok(isStDType('F16'));
    assert.ok(!isStDType('F64'));
    assert.ok(!isStDType('toString'));
  });
});

describe('round trip', () => {
  test('F32/F16/BF16/I32/I64/I8/U8/BOOL with metadata', async () => {
    const f32vals = [0, 1, -2.5, 3.1415927410125732, 1e-30, -65536.5];

    const f16vals = [0, 1, -2.5, 0.333251953125, 65504, 2 ** -24, -Infinity];
    const f16dv = new DataView(new ArrayBuffer(f16vals.length * 2));
    f16vals.forEach((v, i) => setFloat16(f16dv, i * 2, v, true));

    const bf16vals = [0, 1, -2, 3.140625, 1.5e38 /* not exact; round below */, -0.0078125];
    const bf16bits = new Uint16Array(bf16vals.length);
    const bfExpected = bf16vals.map((v, i) => {
      const u = new Uint32Array(new Float32Array([v]).buffer)[0];
      bf16bits[i] = u >>> 16; // truncate to bf16
      return new Float32Array(new Uint32Array([(u >>> 16) << 16]).buffer)[0];
    });

    const i32vals = [0, 1, -1, 2147483647, -2147483648, 42];
    const i64 = new BigInt64Array([0n, -1n, 2147483647n, -2147483648n, 7n]);
    const i8 = new Int8Array([-128, -1, 0, 127]);
    const u8 = new Uint8Array([0, 1, 200, 255]);
    const bool = new Uint8Array([0, 1, 1, 0, 2]);

    const p = tmpPath('roundtrip');
    writeSafetensors(
      p,
      [
        { name: 'f32', dtype: 'F32', shape: [2, 3], data: f32(f32vals) },
        { name: 'f16', dtype: 'F16', shape: [7], data: new Uint8Array(f16dv.buffer) },
        { name: 'bf16', dtype: 'BF16', shape: [3, 2], data: new Uint8Array(bf16bits.buffer) },
        { name: 'i32', dtype: 'I32', shape: [6], data: new Uint8Array(new Int32Array(i32vals).buffer) },
        { name: 'i64', dtype: 'I64', shape: [5], data: new Uint8Array(i64.buffer) },
        { name: 'i8', dtype: 'I8', shape: [4], data: new Uint8Array(i8.buffer) },
        { name: 'u8', dtype: 'U8', shape: [2, 2], data: u8 },
        { name: 'bool', dtype: 'BOOL', shape: [5], data: bool },
        { name: 'empty', dtype: 'F32', shape: [0, 4], data: new Uint8Array(0) },
        { name: 'scalar', dtype: 'F32', shape: [], data: f32([9.5]) },
      ],
      { format: 'pt', note: 'hello' },
    );

    // Header padded with spaces to a multiple of 8.
    const bytes = fs.readFileSync(p);
    const hlen = Number(bytes.readBigUInt64LE(0));
    assert.equal(hlen % 8, 0);
    assert.match(bytes.subarray(8, 8 + hlen).toString('utf8'), /^\{.*\} *$/);

    const f = await SafetensorsFile.open(p);
    try {
      assert.deepEqual(f.metadata, { format: 'pt', note: 'hello' });
      assert.equal(f.tensors.size, 10);
      assert.ok(!f.tensors.has('__metadata__'));

      const info = f.tensors.get('f32')!;
      assert.deepEqual(info.shape, [2, 3]);
      assert.equal(info.dtype, 'F32');
      assert.equal(info.file, path.resolve(p));
      assert.equal(info.begin, 8 + hlen);
      assert.equal(info.end, 8 + hlen + 24);

      const rd = async (n: string) => [f.tensors.get(n)!, await f.read(n)] as const;
      {
        const [i, b] = await rd('f32');
        assert.equal(b.byteLength, 24);
        assert.deepEqual(Array.from(toFloat32(i, b)), Array.from(new Float32Array(f32vals)));
      }
      {
        const [i, b] = await rd('f16');
        assert.deepEqual(Array.from(toFloat32(i, b)), f16vals);
      }
      {
        const [i, b] = await rd('bf16');
        const got = Array.from(toFloat32(i, b));
        assert.deepEqual(got, bfExpected);
        assert.deepEqual(got.slice(0, 4), [0, 1, -2, 3.140625]);
      }
      {
        const [i, b] = await rd('i32');
        assert.deepEqual(Array.from(toInt32(i, b)), i32vals);
      }
      {
        const [i, b] = await rd('i64');
        assert.deepEqual(Array.from(toInt32(i, b)), [0, -1, 2147483647, -2147483648, 7]);
      }
      {
        const [i, b] = await rd('i8');
        assert.deepEqual(Array.from(toInt32(i, b)), [-128, -1, 0, 127]);
      }
      {
        const [i, b] = await rd('u8');
        assert.deepEqual(Array.from(toInt32(i, b)), [0, 1, 200, 255]);
      }
      {
        const [i, b] = await rd('bool');
        assert.deepEqual(Array.from(toInt32(i, b)), [0, 1, 1, 0, 1]);
      }
      {
        const [i, b] = await rd('empty');
        assert.equal(b.byteLength, 0);
        assert.equal(toFloat32(i, b).length, 0);
      }
      {
        const [i, b] = await rd('scalar');
        assert.deepEqual(Array.from(toFloat32(i, b)), [9.5]);
      }

      // readInto with a reusable staging buffer.
      const staging = new Uint8Array(64);
      const v = await f.readInto('i32', staging);
      assert.equal(v.buffer, staging.buffer);
      assert.deepEqual(Array.from(toInt32(f.tensors.get('i32')!, v)), i32vals);
      await assert.rejects(f.readInto('i32', new Uint8Array(4)), /destination buffer too small: expected >= 24 bytes, got 4/);

      await assert.rejects(f.read('nope'), (e: unknown) => e instanceof LoadError && /tensor "nope": no such tensor/.test(e.message));
    } finally {
      await f.close();
    }
    await assert.rejects(f.read('f32'), (e: unknown) => e instanceof LoadError && /has been closed/.test(e.message));
    await f.close(); // idempotent
  });

  test('__metadata__ only, no tensors, 0 data bytes is valid', async () => {
    const p = rawFile('meta-only', { __metadata__: { a: 'b' } });
    const f = await SafetensorsFile.open(p);
    assert.deepEqual(f.metadata, { a: 'b' });
    assert.equal(f.tensors.size, 0);
    await f.close();
    const q = rawFile('empty-obj', {});
    const g = await SafetensorsFile.open(q);
    assert.equal(g.tensors.size, 0);
    assert.deepEqual(g.metadata, {});
    await g.close();
  });

  test('tensors written out of order and with zero-size entries are accepted', async () => {
    const data = f32([1, 2, 3, 4]);
    const p = rawFile('unordered', {
      b: { dtype: 'F32', shape: [2], data_offsets: [8, 16] },
      z: { dtype: 'F32', shape: [0], data_offsets: [8, 8] },
      a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] },
    }, data);
    const f = await SafetensorsFile.open(p);
    assert.deepEqual(Array.from(toFloat32(f.tensors.get('b')!, await f.read('b'))), [3, 4]);
    assert.deepEqual(Array.from(toFloat32(f.tensors.get('a')!, await f.read('a'))), [1, 2]);
    await f.close();
  });

  test('toFloat32/toInt32 handle unaligned byteOffsets by copying', () => {
    const info = (dtype: TensorInfo['dtype'], n: number): TensorInfo => ({
      name: 't', dtype, shape: [n], file: 'mem', begin: 0, end: n * ITEM_SIZE[dtype],
    });
    const backing = new Uint8Array(1 + 12);
    backing.set(f32([1.5, -2, 3]), 1);
    const un = backing.subarray(1);
    assert.equal(un.byteOffset % 4, 1);
    assert.deepEqual(Array.from(toFloat32(info('F32', 3), un)), [1.5, -2, 3]);

    const b16 = new Uint8Array(1 + 6);
    const dv = new DataView(b16.buffer, 1);
    setFloat16(dv, 0, 0.5, true);
    setFloat16(dv, 2, -1, true);
    setFloat16(dv, 4, 1024, true);
    assert.deepEqual(Array.from(toFloat32(info('F16', 3), b16.subarray(1))), [0.5, -1, 1024]);
    const bb = new Uint8Array(1 + 4);
    new DataView(bb.buffer, 1).setUint16(0, 0x3fc0, true); // 1.5
    new DataView(bb.buffer, 1).setUint16(2, 0xc000, true); // -2
    assert.deepEqual(Array.from(toFloat32(info('BF16', 2), bb.subarray(1))), [1.5, -2]);

    const i = new Uint8Array(1 + 8);
    new DataView(i.buffer, 1).setInt32(0, -7, true);
    new DataView(i.buffer, 1).setInt32(4, 123456, true);
    assert.deepEqual(Array.from(toInt32(info('I32', 2), i.subarray(1))), [-7, 123456]);
    const l = new Uint8Array(3 + 16);
    new DataView(l.buffer, 3).setBigInt64(0, -5n, true);
    new DataView(l.buffer, 3).setBigInt64(8, 99n, true);
    assert.deepEqual(Array.from(toInt32(info('I64', 2), l.subarray(3))), [-5, 99]);
  });

  test('decoder errors are LoadErrors', () => {
    const info: TensorInfo = { name: 'big', dtype: 'I64', shape: [2], file: 'x.safetensors', begin: 100, end: 116 };
    const b = new Uint8Array(new BigInt64Array([1n, 2147483648n]).buffer);
    assert.throws(() => toInt32(info, b), (e: unknown) =>
      e instanceof LoadError && /tensor "big": I64 value at index 1 is 2147483648, outside the int32 range/.test(e.message));
    const neg = new Uint8Array(new BigInt64Array([-2147483649n]).buffer);
    assert.throws(() => toInt32({ ...info, shape: [1], end: 108 }, neg), /index 0 is -2147483649, outside the int32 range/);
    assert.throws(() => toFloat32(info, b), (e: unknown) => e instanceof LoadError && /dtype I64 is not a float type/.test(e.message));
    assert.throws(() => toInt32({ ...info, dtype: 'F32', shape: [4] }, b), /dtype F32 is not an integer type/);
    assert.throws(() => toFloat32({ ...info, dtype: 'F32', shape: [4] }, b.subarray(0, 12)), /byte length mismatch: .* needs 16 bytes \(span 16\), got 12/);
  });

  test('encodeSafetensorsHeader lays tensors out contiguously', () => {
    const enc = encodeSafetensorsHeader([
      { name: 'a', dtype: 'F16', shape: [3] },
      { name: 'b', dtype: 'I64', shape: [2, 2] },
    ]);
    assert.deepEqual(enc.offsets, [[0, 6], [6, 38]]);
    assert.equal(enc.dataLength, 38);
    assert.equal(enc.headerLength % 8, 0);
    assert.equal(enc.bytes.byteLength, 8 + enc.headerLength);
  });
});

describe('malformed files', () => {
  const okHeader = { w: { dtype: 'F32', shape: [4], data_offsets: [0, 16] } };

  test('file shorter than 8 bytes', async () => {
    await expectLoadError(writeBytes('short3', new Uint8Array([1, 2, 3])), /too short: expected at least 8 bytes .*got 3 bytes/);
  });

  test('empty file', async () => {
    await expectLoadError(writeBytes('empty', new Uint8Array(0)), /too short: expected at least 8 bytes .*got 0 bytes/);
  });

  test('header length pointing beyond the end of the file', async () => {
    const p = rawFile('hdr-beyond', '{}', 0, { len: 1000n });
    await expectLoadError(p, /header length 1000 extends beyond the end of the file: expected file size >= 1008 bytes .*got 10 bytes/);
  });

  test('header length beyond a configured cap', async () => {
    const p = rawFile('cap', okHeader, 16);
    const hl = JSON.stringify(okHeader).length;
    await expectLoadError(p, new RegExp(`header length ${hl} bytes exceeds the cap of 32 bytes \\(maxHeaderBytes\\)`), { maxHeaderBytes: 32 });
    // The same file is fine under the default cap.
    await (await SafetensorsFile.open(p)).close();
  });

  test('header length beyond the default 100 MiB cap', async () => {
    const p = rawFile('cap-default', '{}', 0, { len: 200n * 1024n * 1024n });
    await expectLoadError(p, /header length 209715200 bytes exceeds the cap of 104857600 bytes/);
  });

  test('huge u64 header length (all ones)', async () => {
    const p = rawFile('huge', '{}', 0, { len: 0xffffffffffffffffn });
    await expectLoadError(p, /header length 18446744073709551615 is not a plausible size \(exceeds Number.MAX_SAFE_INTEGER/);
  });

  test('u64 header length just above MAX_SAFE_INTEGER', async () => {
    const p = rawFile('huge2', '{}', 0, { len: 2n ** 53n });
    await expectLoadError(p, /header length 9007199254740992 is not a plausible size/);
  });

  test('invalid JSON header', async () => {
    await expectLoadError(rawFile('badjson', '{"w": {"dtype": "F32",'), /header is not valid JSON/);
  });

  test('invalid UTF-8 header', async () => {
    const p = tmpPath('badutf8');
    const prefix = Buffer.alloc(8);
    prefix.writeBigUInt64LE(4n);
    fs.writeFileSync(p, Buffer.concat([prefix, Buffer.from([0x7b, 0xff, 0xfe, 0x7d])]));
    await expectLoadError(p, /header is not valid UTF-8/);
  });

  test('JSON header is an array', async () => {
    await expectLoadError(rawFile('array', '[1,2]'), /header JSON must be an object .*got an array/);
  });

  test('JSON header is a number / null', async () => {
    await expectLoadError(rawFile('number', '42'), /header JSON must be an object .*got number 42/);
    await expectLoadError(rawFile('null', 'null'), /header JSON must be an object .*got null/);
  });

  test('tensor entry is not an object', async () => {
    await expectLoadError(rawFile('entry', { w: [1, 2] }), /tensor "w": entry must be an object .*got an array/);
  });

  test('bad dtype', async () => {
    const p = rawFile('dtype', { w: { dtype: 'F64', shape: [2], data_offsets: [0, 16] } }, 16);
    await expectLoadError(p, /tensor "w": unsupported dtype string "F64"; expected one of F32, F16, BF16, I32, I64, I8, U8, BOOL/);
  });

  test('missing dtype', async () => {
    const p = rawFile('nodtype', { w: { shape: [4], data_offsets: [0, 16] } }, 16);
    await expectLoadError(p, /tensor "w": missing "dtype"/);
  });

  test('dtype/size mismatch: F32 declared, span sized for F16', async () => {
    const p = rawFile('dtype-size', { w: { dtype: 'F32', shape: [4], data_offsets: [0, 8] } }, 8);
    await expectLoadError(p, /tensor "w": size mismatch: shape \[4\] x F32 \(4 bytes\/element\) needs 16 bytes, but data_offsets \[0, 8\] span 8 bytes/);
  });

  test('shape/size mismatch', async () => {
    const p = rawFile('shape-size', { w: { dtype: 'F32', shape: [2, 3], data_offsets: [0, 16] } }, 16);
    await expectLoadError(p, /tensor "w": size mismatch: shape \[2,3\] x F32 .* needs 24 bytes, but data_offsets \[0, 16\] span 16 bytes/);
  });

  test('negative shape dimension', async () => {
    const p = rawFile('neg-shape', { w: { dtype: 'F32', shape: [-2, -2], data_offsets: [0, 16] } }, 16);
    await expectLoadError(p, /tensor "w": shape\[0\] must be a non-negative safe integer, got number -2/);
  });

  test('non-integer shape dimension', async () => {
    const p = rawFile('frac-shape', { w: { dtype: 'F32', shape: [2, 1.5], data_offsets: [0, 12] } }, 12);
    await expectLoadError(p, /tensor "w": shape\[1\] must be a non-negative safe integer, got number 1.5/);
  });

  test('string shape dimension and non-array shape', async () => {
    const p = rawFile('str-shape', { w: { dtype: 'F32', shape: ['4'], data_offsets: [0, 16] } }, 16);
    await expectLoadError(p, /tensor "w": shape\[0\] must be a non-negative safe integer, got string "4"/);
    const q = rawFile('obj-shape', { w: { dtype: 'F32', shape: 4, data_offsets: [0, 16] } }, 16);
    await expectLoadError(q, /tensor "w": "shape" must be an array of non-negative integers, got number 4/);
  });

  test('shape whose element count overflows', async () => {
    const big = Number.MAX_SAFE_INTEGER;
    const p = rawFile('overflow', { w: { dtype: 'F32', shape: [big, big], data_offsets: [0, 16] } }, 16);
    await expectLoadError(p, /tensor "w": size mismatch: .* needs 324518553658426654725561982648324 bytes/);
  });

  test('data_offsets begin > end', async () => {
    const p = rawFile('begin-gt-end', { w: { dtype: 'F32', shape: [2], data_offsets: [16, 8] } }, 16);
    await expectLoadError(p, /tensor "w": data_offsets begin 16 is greater than end 8/);
  });

  test('data_offsets malformed (wrong length, negative, non-integer)', async () => {
    const p = rawFile('offs-len', { w: { dtype: 'F32', shape: [0], data_offsets: [0] } });
    await expectLoadError(p, /tensor "w": "data_offsets" must be \[begin, end\], got an array of length 1/);
    const q = rawFile('offs-neg', { w: { dtype: 'F32', shape: [2], data_offsets: [-8, 0] } }, 8);
    await expectLoadError(q, /tensor "w": data_offsets begin must be a non-negative safe integer, got number -8/);
    const r = rawFile('offs-frac', { w: { dtype: 'F32', shape: [2], data_offsets: [0, 8.5] } }, 8);
    await expectLoadError(r, /tensor "w": data_offsets end must be a non-negative safe integer, got number 8.5/);
    const s = rawFile('offs-missing', { w: { dtype: 'F32', shape: [2] } }, 8);
    await expectLoadError(s, /tensor "w": missing "data_offsets"/);
  });

  test('overlapping offsets', async () => {
    const p = rawFile('overlap', {
      a: { dtype: 'F32', shape: [4], data_offsets: [0, 16] },
      b: { dtype: 'F32', shape: [4], data_offsets: [8, 24] },
    }, 24);
    await expectLoadError(p, /tensors overlap: "a" occupies \[0, 16\) and "b" occupies \[8, 24\) \(expected "b" to begin at >= 16\)/);
  });

  test('identical offsets for two tensors overlap', async () => {
    const p = rawFile('overlap-same', {
      a: { dtype: 'F32', shape: [4], data_offsets: [0, 16] },
      b: { dtype: 'I32', shape: [4], data_offsets: [0, 16] },
    }, 16);
    await expectLoadError(p, /tensors overlap: "a" occupies \[0, 16\) and "b" occupies \[0, 16\)/);
  });

  test('offsets beyond the data section', async () => {
    const p = rawFile('beyond', {
      a: { dtype: 'F32', shape: [4], data_offsets: [0, 16] },
      b: { dtype: 'F32', shape: [4], data_offsets: [48, 64] },
    }, 16);
    await expectLoadError(p, /tensor "b": data_offsets end 64 is beyond the data section: expected the data section to hold >= 64 bytes, got 16 bytes/);
  });

  test('data section shorter than the tensors (truncated file)', async () => {
    const good = tmpPath('good');
    writeSafetensors(good, [
      { name: 'a', dtype: 'F32', shape: [4], data: f32([1, 2, 3, 4]) },
      { name: 'b', dtype: 'F32', shape: [2], data: f32([5, 6]) },
    ]);
    const bytes = fs.readFileSync(good);
    const p = writeBytes('truncated', bytes.subarray(0, bytes.length - 3));
    await expectLoadError(p, /tensor "b": data_offsets end 24 is beyond the data section: .*got 21 bytes \(file size \d+ = 8 \+ header \d+ \+ data 21; truncated\?\)/);
  });

  test('data section longer than the tensors (trailing bytes)', async () => {
    const p = rawFile('trailing', okHeader, 20);
    await expectLoadError(p, /data section length mismatch: tensors end at byte 16 of the data section, but the data section is 20 bytes \(4 trailing bytes/);
  });

  test('no tensors but non-empty data section', async () => {
    const p = rawFile('trailing-empty', { __metadata__: { a: 'b' } }, 8);
    await expectLoadError(p, /data section length mismatch: tensors end at byte 0 .* data section is 8 bytes \(8 trailing bytes/);
  });

  test('metadata with a non-string value', async () => {
    const p = rawFile('meta-num', { __metadata__: { format: 'pt', n: 1 }, ...okHeader }, 16);
    await expectLoadError(p, /__metadata__\["n"\] must be a string, got number 1/);
  });

  test('metadata that is not an object', async () => {
    const p = rawFile('meta-arr', { __metadata__: ['pt'], ...okHeader }, 16);
    await expectLoadError(p, /__metadata__ must be an object of string values, got an array/);
  });

  test('missing file and directory', async () => {
    await expectLoadError(path.join(tmp, 'does-not-exist.safetensors'), /file does not exist/);
    const d = path.join(tmp, 'a-dir.safetensors');
    fs.mkdirSync(d);
    await expectLoadError(d, /not a regular file/);
  });
});

describe('fixtures', () => {
  const F32 = fixture('smolvlm-tiny/model.safetensors');
  const F16 = fixture('smolvlm-tiny-f16/model.safetensors');
  const BF16 = fixture('smolvlm-tiny-bf16/model.safetensors');

  test('F32 fixture: 59 tensors, embed_tokens [320, 64]', async () => {
    const f = await SafetensorsFile.open(F32);
    try {
      assert.equal(f.tensors.size, 59);
      const e = f.tensors.get('model.text_model.embed_tokens.weight');
      assert.ok(e);
      assert.deepEqual(e.shape, [320, 64]);
      assert.equal(e.dtype, 'F32');
      assert.equal(e.end - e.begin, 320 * 64 * 4);
      const vals = toFloat32(e, await f.read(e.name));
      assert.equal(vals.length, 320 * 64);
      assert.ok(vals.every(Number.isFinite));
      assert.ok(vals.some((v) => v !== 0));
      for (const info of f.tensors.values()) assert.equal(info.dtype, 'F32');
    } finally {
      await f.close();
    }
  });

  for (const [label, file, dtype, rel] of [
    ['F16', F16, 'F16', 2 ** -11],
    ['BF16', BF16, 'BF16', 2 ** -8],
  ] as const) {
    test(`${label} fixture upcasts to the F32 master within ${label} rounding`, async () => {
      const master = await SafetensorsFile.open(F32);
      const low = await SafetensorsFile.open(file);
      try {
        assert.equal(low.tensors.size, 59);
        assert.deepEqual([...low.tensors.keys()].sort(), [...master.tensors.keys()].sort());
        let checked = 0;
        for (const [name, mi] of master.tensors) {
          const li = low.tensors.get(name)!;
          assert.equal(li.dtype, dtype, name);
          assert.deepEqual(li.shape, mi.shape, name);
          const x = toFloat32(mi, await master.read(name));
          const y = toFloat32(li, await low.read(name));
          assert.equal(y.length, x.length);
          for (let i = 0; i < x.length; i++) {
            const ax = Math.abs(x[i]);
            // f16 subnormals (|x| < 2^-14) have an absolute half-ulp of 2^-25.
            const tol = dtype === 'F16' && ax < 2 ** -14 ? 2 ** -25 : rel * ax;
            const d = Math.abs(y[i] - x[i]);
            if (!(d <= tol)) assert.fail(`${label} ${name}[${i}]: f32 ${x[i]} vs ${y[i]}, |Δ| ${d} > ${tol}`);
            checked++;
          }
        }
        assert.ok(checked > 100_000, `checked ${checked} values`);
      } finally {
        await master.close();
        await low.close();
      }
    });
  }
});
