// Reads the third-party reference tensors (reference.safetensors of the fixtures) for comparisons.
import assert from 'node:assert/strict';
import { SafetensorsFile } from '../src/io/safetensors.ts';
import { toFloat32, toInt32 } from '../src/io/decode.ts';
import type { ChunkLimits, ImageBatch, VisionLanguageModel } from '../src/models/vlm.ts';
import { imagesOfSizes } from '../src/diff.ts';
import type { DeviceImage } from '../src/image/gpu-preprocess.ts';
import { assertClose } from './data.ts';
import { fileURLToPath } from 'node:url';

export const FIXTURES = fileURLToPath(new URL('./fixtures/', import.meta.url));

export interface Reference {
  f32(name: string): Promise<{ data: Float32Array; shape: number[] }>;
  i32(name: string): Promise<Int32Array>;
  names: string[];
  metadata: Record<string, string>;
  close(): Promise<void>;
}

export async function openReference(path: string): Promise<Reference> {
  const f = await SafetensorsFile.open(path);
  const info = (name: string) => {
    const i = f.tensors.get(name);
    if (!i) throw new Error(`${path}: no tensor ${name}`);
    return i;
  };
  return {
    names: [...f.tensors.keys()],
    metadata: f.metadata,
    async f32(name) {
      const i = info(name);
      return { data: toFloat32(i, await f.read(name)), shape: i.shape };
    },
    async i32(name) {
      return toInt32(info(name), await f.read(name));
    },
    close: () => f.close(),
  };
}

/**
 * A batch's pixel values on the host: its pixels, or its tiles read back from the device (GPU preprocessing) in
 * image order.
 */
export async function batchPixels(batch: ImageBatch): Promise<Float32Array> {
  if (!batch.images.some((im) => im.device)) return batch.pixels;
  const parts = await Promise.all(batch.images.map((im) => (im.device as DeviceImage).read()));
  const out = new Float32Array(parts.reduce((a, p) => a + p.length, 0));
  parts.reduce((o, p) => (out.set(p, o), o + p.length), 0);
  return out;
}

/** The reference's pixel_values, laid out by its image_sizes where it has them (LLaVA-NeXT). */
export async function referenceImages(model: VisionLanguageModel, ref: Reference): Promise<Float32Array | ImageBatch> {
  const pixels = (await ref.f32('pixel_values')).data;
  return ref.names.includes('image_sizes') ? imagesOfSizes(model, pixels, await ref.i32('image_sizes')) : pixels;
}

/**
 * Runs `model` on the reference's inputs with every tap in `taps`, and checks each intermediate (shape
 * first, then values within `atol`) against the reference tensor of the same name. Returns a report line.
 */
export async function checkTaps(
  model: VisionLanguageModel,
  ref: Reference,
  taps: string[],
  atol: number,
  label: string,
  limits?: ChunkLimits,
): Promise<string> {
  const ids = await ref.i32('input_ids');
  const step = await model.forward(ids, await referenceImages(model, ref), { logits: 'all', taps, limits });
  const report: string[] = [];
  for (const tap of taps) {
    const want = await ref.f32(tap);
    assert.ok(step.taps.includes(tap), `${label}: the model does not produce ${tap}`);
    const got = await step.tap(tap);
    assert.equal(got.length, want.data.length, `${label} ${tap}: ${got.length} values, reference [${want.shape.join(', ')}]`);
    const { maxAbs } = assertClose(got, want.data, { atol }, `${label} ${tap}`);
    report.push(`${tap} ${maxAbs.toExponential(2)}`);
  }
  return `${label} max |Δ|: ${report.join(', ')}`;
}
