// The embedding rows: the token gather (plain, and with LLaVA-NeXT's image rows and newlines) and
// CLIP's class token + position embeddings.
import { embed, classPosition, NEWLINE_ROW, NOT_IMAGE } from '../../src/ops/embedding.ts';
import { weight } from '../../test/data.ts';
import { embed64 } from '../../test/ops/reference.ts';
import { DT } from '../peers/onnx.ts';
import { lazy, maxAbs, type PeerCase, type Shapes } from './common.ts';

/** The token embedding gather over a prompt. */
export function embeddingCase(s: Shapes): PeerCase {
  const { tc, prefillT } = s;
  return {
    name: `embedding gather ${prefillT} ids from ${tc.vocab_size}×${tc.hidden_size}`,
    kernel: 'embedding',
    flops: 0,
    bytes: 8 * prefillT * tc.hidden_size + 4 * prefillT,
    async setup(gpu, g, rng) {
      const [V, D] = [tc.vocab_size, tc.hidden_size];
      const tv = rng.array(V * D, 0.25);
      const table = await weight(gpu, g, 'table', [V, D], tv);
      const ids = Uint32Array.from({ length: prefillT }, () => Math.floor(rng.next() * V));
      const x = g.input('ids', [prefillT], 'u32');
      const ref = lazy(() => embed64(ids, table.v, D));
      return {
        outputs: [embed(g, x, table.t)],
        inputs: [[x, ids]],
        check: ([y]) => maxAbs(y, ref(), { atol: 0 }, 'embedding'),
        peer: {
          graph: 'Gather(table [V,D] initializer, int64 ids)',
          model: {
            nodes: [{ op: 'Gather', inputs: ['table', 'ids'], outputs: ['y'], attrs: { axis: 0 } }],
            inputs: [{ name: 'ids', shape: [prefillT], type: DT.INT64 }],
            outputs: [{ name: 'y', shape: [prefillT, D] }],
            initializers: [{ name: 'table', shape: [V, D], data: tv }],
          },
          feeds: { ids: { type: 'int64', data: BigInt64Array.from(ids, BigInt), dims: [prefillT] } },
          output: 'y',
          check: (y) => maxAbs(y, ref(), { atol: 0 }, 'ORT embedding'),
        },
      };
    },
  };
}

/** The token embedding gather with image features and newlines packed in (LLaVA-NeXT). */
export function anyresEmbeddingCase(s: Shapes): PeerCase {
  const { tc, prefillT } = s;
  return {
    // Ours only: LLaVA-NeXT's anyres packing as the gather's row map; half the rows are image features,
    // one in 7 of those the image-newline vector (no ONNX op does this in one).
    name: `embedding gather ${prefillT} ids with anyres image rows and newlines, ${tc.hidden_size} wide`,
    kernel: 'embedding',
    flops: 0,
    bytes: 8 * prefillT * tc.hidden_size + 8 * prefillT,
    async setup(gpu, g, rng) {
      const [V, D, F] = [tc.vocab_size, tc.hidden_size, Math.ceil(prefillT / 2)];
      const table = await weight(gpu, g, 'table', [V, D], rng.array(V * D, 0.25));
      const [fv, nv] = [rng.array(F * D), rng.array(D)];
      const ids = Uint32Array.from({ length: prefillT }, () => Math.floor(rng.next() * V));
      const rowv = Uint32Array.from({ length: prefillT }, (_, t) => (t % 2 ? NOT_IMAGE : t % 7 === 0 ? NEWLINE_ROW : t / 2));
      const [x, rows] = [g.input('ids', [prefillT], 'u32'), g.input('rows', [prefillT], 'u32')];
      const [features, newline] = [g.input('features', [F, D], 'f32'), g.input('newline', [D], 'f32')];
      const ref = lazy(() => embed64(ids, table.v, D, rowv, fv, nv));
      return {
        outputs: [embed(g, x, table.t, { features, rows, newline })],
        inputs: [[x, ids], [rows, rowv], [features, fv], [newline, nv]],
        check: ([y]) => maxAbs(y, ref(), { atol: 0 }, 'embedding with image rows'),
      };
    },
  };
}

/** CLIP's class token and position embeddings (LLaVA's vision tower). */
export function classPositionCase(s: Shapes): PeerCase {
  const { vc, patches } = s;
  return {
    // Ours only (LLaVA's CLIP tower): onnxruntime would need a Concat + Add graph of no interest.
    name: `CLIP class + position embeddings ${patches}+1 × ${vc.hidden_size}`,
    kernel: 'embedding',
    flops: (patches + 1) * vc.hidden_size,
    bytes: 4 * (patches * vc.hidden_size + vc.hidden_size + 2 * (patches + 1) * vc.hidden_size),
    async setup(gpu, g, rng) {
      const D = vc.hidden_size;
      const pv = rng.array(patches * D);
      const cls = await weight(gpu, g, 'cls', [D], rng.array(D));
      const pos = await weight(gpu, g, 'pos', [patches + 1, D], rng.array((patches + 1) * D));
      const x = g.input('patches', [patches, D], 'f32');
      const ref = lazy(() => Float64Array.from({ length: (patches + 1) * D }, (_, i) => (i < D ? cls.v[i] : pv[i - D]) + pos.v[i]));
      return { outputs: [classPosition(g, x, cls.t, pos.t)], inputs: [[x, pv]], check: ([y]) => maxAbs(y, ref(), { atol: 1e-6 }, 'class_position') };
    },
  };
}
