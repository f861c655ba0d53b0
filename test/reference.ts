// Reads the third-party reference tensors (reference.safetensors of the fixtures) for comparisons.
import { SafetensorsFile, toFloat32, toInt32 } from '../src/io/safetensors.ts';
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
