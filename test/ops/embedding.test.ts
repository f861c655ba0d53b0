// Token embedding gather with image features scattered in (shaders/embedding.wgsl), against a CPU
// reference. A gather is exact: the output must equal the table row as its dtype stores it (weight().v),
// or the image feature row, bit for bit (tolerance 0 for every dtype).
import { describe, it } from 'node:test';
import { Graph, Rng, assertClose, run, testGpu, weight } from '../helpers.ts';
import { NEWLINE_ROW, NOT_IMAGE, embed, classPosition } from '../../src/ops/embedding.ts';
import type { Gpu } from '../../src/gpu/device.ts';
import type { SourceDType } from '../../src/models/storage.ts';
import { embed64 } from './reference.ts';

const EXACT = { atol: 0 };


/** Token ids: the first and last rows, the given ones, then random. */
function tokenIds(rng: Rng, T: number, vocab: number, must: number[] = []): Uint32Array {
  const ids = new Uint32Array(T);
  const fixed = [0, vocab - 1, ...must];
  for (let t = 0; t < T; t++) ids[t] = t < fixed.length ? fixed[t] : Math.floor(rng.next() * vocab);
  return ids;
}

/**
 * Marks `positions` as <image> placeholders mapped in order to feature rows 0, 1, … (as masked_scatter);
 * their token ids are set to a placeholder id, which must be ignored in favour of the features.
 */
function imageRows(ids: Uint32Array, positions: number[], placeholderId: number): Uint32Array {
  const rows = new Uint32Array(ids.length).fill(NOT_IMAGE);
  positions.forEach((p, r) => {
    rows[p] = r;
    ids[p] = placeholderId;
  });
  return rows;
}

async function checkEmbed(
  gpu: Gpu,
  dtype: SourceDType,
  vocab: number,
  D: number,
  T: number,
  seed: number,
  opts: { imagePositions?: number[]; mustIds?: number[]; chunks?: number; newlinePositions?: number[] } = {},
): Promise<void> {
  const rng = new Rng(seed);
  const g = new Graph();
  const table = await weight(gpu, g, 'embed_tokens', [vocab, D], rng.array(vocab * D), dtype);
  if (opts.chunks !== undefined) {
    const n = table.t.chunks?.length ?? 0;
    if (!(n > 1) || n !== opts.chunks) throw new Error(`expected the table split in ${opts.chunks} chunks, got ${n}`);
  }
  const idv = tokenIds(rng, T, vocab, opts.mustIds);
  const ids = g.input('ids', [T], 'u32');
  const label = `embed ${dtype} vocab=${vocab} D=${D} T=${T}`;
  if (!opts.imagePositions) {
    const [out] = await run(gpu, g, [embed(g, ids, table.t)], [[ids, idv]]);
    assertClose(out, embed64(idv, table.v, D), EXACT, label);
    return;
  }
  const nImg = opts.imagePositions.length;
  const rowv = imageRows(idv, opts.imagePositions, vocab - 2);
  const featv = rng.array(nImg * D, 3);
  const rows = g.input('img_rows', [T], 'u32');
  const features = g.input('features', [nImg, D], 'f32');
  // LLaVA-NeXT's packing: some placeholders take the image-newline vector instead of a feature row.
  const newlinev = rng.array(D, 3);
  const newline = opts.newlinePositions ? g.input('newline', [D], 'f32') : undefined;
  for (const p of opts.newlinePositions ?? []) rowv[p] = NEWLINE_ROW;
  const y = embed(g, ids, table.t, { features, rows, newline });
  const [out] = await run(gpu, g, [y], [
    [ids, idv],
    [rows, rowv],
    [features, featv],
    ...(newline ? [[newline, newlinev] as [typeof newline, Float32Array]] : []),
  ]);
  assertClose(out, embed64(idv, table.v, D, rowv, featv, newlinev), EXACT, `${label} with ${nImg} image rows`);
}

describe('embedding', () => {
  for (const dtype of ['F32', 'F16', 'BF16'] as SourceDType[]) {
    // [vocab, D, T]: D = 1, one past a 64-wide workgroup, and several workgroups.
    for (const [vocab, D, T] of [
      [1, 1, 1],
      [50, 65, 9],
      [300, 200, 33],
    ] as [number, number, number][]) {
      it(`text only, ${dtype} vocab=${vocab} D=${D} T=${T}`, async () => {
        await checkEmbed(await testGpu(), dtype, vocab, D, T, vocab * 7 + D + T);
      });
    }

    it(`with image features, ${dtype}`, async () => {
      // Text, then 6 image rows, text, 2 more image rows, text (two images' features in order).
      await checkEmbed(await testGpu(), dtype, 80, 70, 14, 12, { imagePositions: [2, 3, 4, 5, 6, 7, 10, 11] });
    });

    it(`with image features and image-newline rows, ${dtype}`, async () => {
      await checkEmbed(await testGpu(), dtype, 80, 70, 14, 13, { imagePositions: [2, 3, 4, 5, 6, 7, 10, 11], newlinePositions: [4, 7, 11] });
    });

    it(`all positions are image rows, ${dtype}`, async () => {
      await checkEmbed(await testGpu(), dtype, 10, 16, 4, 4, { imagePositions: [0, 1, 2, 3] });
    });
  }
});

describe('embedding with a table split in chunks', () => {
  // A 4 KiB binding limit: the [300, 24] table is 96 bytes a row in f32 (42 rows a chunk → 8 chunks) and
  // 48 bytes stored as F16 or BF16 (85 rows a chunk → 4 chunks). Ids at both sides of every boundary are included.
  const [vocab, D, T] = [300, 24, 40];
  const boundaries = (per: number) => {
    const out: number[] = [];
    for (let r = per; r < vocab; r += per) out.push(r - 1, r);
    return out;
  };
  for (const dtype of ['F32', 'F16', 'BF16'] as SourceDType[]) {
    it(`text only, ${dtype}`, async () => {
      const gpu = await testGpu({ maxStorageBufferBindingSize: 4096 });
      const per = dtype === 'F32' ? 42 : 85;
      await checkEmbed(gpu, dtype, vocab, D, T, 300, { mustIds: boundaries(per), chunks: Math.ceil(vocab / per) });
    });

    it(`with image features, ${dtype}`, async () => {
      // The image rows are written by the first chunk's dispatch only; the others skip them.
      const gpu = await testGpu({ maxStorageBufferBindingSize: 4096 });
      const per = dtype === 'F32' ? 42 : 85;
      await checkEmbed(gpu, dtype, vocab, D, T, 301, {
        mustIds: boundaries(per),
        chunks: Math.ceil(vocab / per),
        imagePositions: [20, 21, 22, 23, 30, 39],
      });
    });
  }
});

describe('CLIP class + position embeddings', () => {
  for (const [tiles, N, D] of [
    [1, 4, 3],
    [1, 36, 64],
    [3, 9, 70],
  ]) {
    it(`${tiles} image(s) of ${N} patches, D=${D}: CLS prepended per image, positions added`, async () => {
      const gpu = await testGpu();
      const rng = new Rng(tiles * 100 + N * 7 + D);
      const g = new Graph();
      const pv = rng.array(tiles * N * D);
      const cls = await weight(gpu, g, 'cls', [D], rng.array(D));
      const pos = await weight(gpu, g, 'pos', [N + 1, D], rng.array((N + 1) * D));
      const x = g.input('patches', [tiles * N, D], 'f32');
      const [out] = await run(gpu, g, [classPosition(g, x, cls.t, pos.t)], [[x, pv]]);
      const want = new Float64Array(tiles * (N + 1) * D);
      for (let t = 0; t < tiles; t++)
        for (let j = 0; j <= N; j++)
          for (let i = 0; i < D; i++) {
            const src = j === 0 ? cls.v[i] : pv[(t * N + j - 1) * D + i];
            want[(t * (N + 1) + j) * D + i] = src + pos.v[j * D + i];
          }
      // One f32 addition of two f32 values: exact to half an ulp.
      assertClose(out, want, { atol: 0, rtol: 2 ** -24 }, 'class_position');
    });
  }
});
