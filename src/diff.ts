// `diff`: runs a model on a reference file's inputs (pixel_values, input_ids) and compares every tensor
// of that file it knows — intermediates, logits at every position, and greedy decoding — reporting
// max abs / relative error per tensor against a tolerance.
import type { ChunkLimits, ImageBatch, VisionLanguageModel } from './models/vlm.ts';
import { SafetensorsFile } from './io/safetensors.ts';
import { toFloat32, toInt32 } from './io/decode.ts';
import { greedy } from './generate.ts';

export interface DiffRow {
  name: string;
  shape: number[];
  maxAbs: number;
  maxRel: number;
  tol: number;
  ok: boolean;
  note?: string;
}

export interface DiffResult {
  rows: DiffRow[];
  skipped: string[];
  ok: boolean;
  firstBad?: string;
}

/** Inputs of a reference file, never compared: every one the file holds goes to the model. */
const INPUTS = new Set(['pixel_values', 'input_ids', 'image_sizes']);

/** A reference's pixel_values laid out by its image_sizes ([height, width] per image) as the model tiles them. */
export function imagesOfSizes(model: VisionLanguageModel, pixels: Float32Array, hw: ArrayLike<number>): ImageBatch {
  return { pixels, images: Array.from({ length: hw.length / 2 }, (_, i) => model.imageLayout(hw[2 * i], hw[2 * i + 1])) };
}

export async function diffReference(
  model: VisionLanguageModel,
  referencePath: string,
  tolerance: (name: string) => number,
  log: (s: string) => void = () => {},
  limits?: ChunkLimits,
): Promise<DiffResult> {
  const ref = await SafetensorsFile.open(referencePath);
  try {
    const need = (name: string) => {
      const info = ref.tensors.get(name);
      if (!info) throw new Error(`${referencePath}: no tensor "${name}" (a reference file needs pixel_values and input_ids)`);
      return info;
    };
    const idsInfo = need('input_ids');
    const ids = toInt32(idsInfo, await ref.read('input_ids'));
    const pixInfo = ref.tensors.get('pixel_values');
    const flat = pixInfo ? toFloat32(pixInfo, await ref.read('pixel_values')) : null;
    // image_sizes ([images, 2] of height, width, transformers' convention) lays the tiles out per image.
    const sizesInfo = ref.tensors.get('image_sizes');
    let pixels: Float32Array | ImageBatch | null = flat;
    if (sizesInfo) {
      if (!flat) throw new Error(`${referencePath}: image_sizes without pixel_values`);
      if (sizesInfo.shape.length !== 2 || sizesInfo.shape[1] !== 2) throw new Error(`${referencePath}: image_sizes must be [images, 2] (height, width), got [${sizesInfo.shape.join(', ')}]`);
      pixels = imagesOfSizes(model, flat, toInt32(sizesInfo, await ref.read('image_sizes')));
    }
    const names = [...ref.tensors.keys()].filter((n) => !INPUTS.has(n) && n !== 'greedy_ids' && n !== 'greedy_logits');
    log(`running the model on ${ids.length} tokens${pixInfo ? ` and ${pixInfo.shape.join('×')} pixels` : ''}${sizesInfo ? ' laid out by image_sizes' : ''}`);
    const step = await model.forward(ids, pixels, { logits: 'all', taps: names, limits });
    const rows: DiffRow[] = [];
    const skipped: string[] = [];
    const compare = (name: string, shape: number[], got: ArrayLike<number>, want: ArrayLike<number>) => {
      let maxAbs = 0;
      let maxRel = 0;
      if (got.length !== want.length) {
        rows.push({ name, shape, maxAbs: Infinity, maxRel: Infinity, tol: tolerance(name), ok: false, note: `${got.length} values, reference has ${want.length}` });
        return;
      }
      for (let i = 0; i < got.length; i++) {
        const d = Math.abs(got[i] - want[i]);
        const e = Number.isNaN(d) ? Infinity : d;
        if (e > maxAbs) maxAbs = e;
        const r = e / Math.max(Math.abs(want[i]), 1e-6);
        if (r > maxRel) maxRel = r;
      }
      const tol = tolerance(name);
      rows.push({ name, shape, maxAbs, maxRel, tol, ok: maxAbs <= tol });
    };
    // Compare in the order the model computes them, so the first failure points at the first faulty kernel.
    const rank = (n: string) => (step.taps.includes(n) ? step.taps.indexOf(n) : Infinity);
    names.sort((a, b) => rank(a) - rank(b));
    for (const name of names) {
      if (!step.taps.includes(name)) {
        skipped.push(name);
        continue;
      }
      const info = ref.tensors.get(name)!;
      const want = toFloat32(info, await ref.read(name));
      compare(name, info.shape, await step.tap(name), want);
    }
    if (ref.tensors.has('greedy_ids')) {
      const wantIds = toInt32(ref.tensors.get('greedy_ids')!, await ref.read('greedy_ids'));
      const logitsInfo = ref.tensors.get('greedy_logits');
      const wantLogits = logitsInfo ? toFloat32(logitsInfo, await ref.read('greedy_logits')) : null;
      log(`greedy decoding ${wantIds.length} tokens with the KV cache`);
      const got: number[] = [];
      const gotLogits: number[] = [];
      for await (const s of greedy(model, ids, pixels, { maxNewTokens: wantIds.length, stopAtEos: false, withLogits: !!wantLogits, limits })) {
        got.push(s.token);
        if (s.logits) gotLogits.push(...s.logits);
      }
      if (wantLogits) compare('greedy_logits', logitsInfo!.shape, gotLogits, wantLogits);
      const mismatch = got.findIndex((t, i) => t !== wantIds[i]);
      rows.push({
        name: 'greedy_ids',
        shape: [wantIds.length],
        maxAbs: mismatch < 0 ? 0 : 1,
        maxRel: 0,
        tol: 0,
        ok: mismatch < 0,
        note: mismatch < 0 ? 'all equal' : `step ${mismatch}: got ${got[mismatch]}, reference ${wantIds[mismatch]}`,
      });
    }
    const firstBad = rows.find((r) => !r.ok)?.name;
    return { rows, skipped, ok: !firstBad, firstBad };
  } finally {
    await ref.close();
  }
}

export function formatDiff(r: DiffResult): string {
  const head = ['tensor', 'shape', 'max |Δ|', 'max rel', 'tolerance', 'status'];
  const body = r.rows.map((x) => [
    x.name,
    `[${x.shape.join(', ')}]`,
    x.maxAbs.toExponential(2),
    x.name === 'greedy_ids' ? '-' : x.maxRel.toExponential(2),
    x.name === 'greedy_ids' ? 'exact' : x.tol.toExponential(1),
    (x.ok ? 'ok' : x.name === r.firstBad ? 'FAIL ← first beyond tolerance' : 'FAIL') + (x.note ? ` (${x.note})` : ''),
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i])).join('  ').trimEnd();
  const out = [line(head), line(widths.map((w) => '-'.repeat(w))), ...body.map(line)];
  if (r.skipped.length) out.push(`not compared (unknown to this model): ${r.skipped.join(', ')}`);
  out.push(r.ok ? 'diff: every compared tensor is within tolerance' : `diff: FAILED, first beyond tolerance: ${r.firstBad}`);
  return out.join('\n');
}
