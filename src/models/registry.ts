// Picks the model implementation from config.json's model_type.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Gpu } from '../gpu/device.ts';
import { SmolVLM } from './smolvlm.ts';
import { Llava } from './llava.ts';
import type { VisionLanguageModel } from './vlm.ts';
import type { ModelLoadOptions } from './weights.ts';

export const SUPPORTED = {
  idefics3: 'SmolVLM / Idefics3 (Idefics3ForConditionalGeneration)',
  llava: 'LLaVA-1.5 (LlavaForConditionalGeneration)',
} as const;

export async function modelType(dir: string): Promise<string> {
  const file = join(dir, 'config.json');
  let json: unknown;
  try {
    json = JSON.parse(await readFile(file, 'utf8'));
  } catch (e) {
    throw new Error(`${file}: cannot read the model config (${(e as Error).message})`);
  }
  const t = (json as { model_type?: unknown })?.model_type;
  if (typeof t !== 'string') throw new Error(`${file}: no "model_type" string`);
  return t;
}

export async function loadModelDir(gpu: Gpu, dir: string, opts: ModelLoadOptions = {}): Promise<VisionLanguageModel> {
  const type = await modelType(dir);
  switch (type) {
    case 'idefics3':
      return SmolVLM.load(gpu, dir, opts);
    case 'llava':
      return Llava.load(gpu, dir, opts);
    default:
      throw new Error(
        `${join(dir, 'config.json')}: model_type "${type}" is not supported; supported: ${Object.entries(SUPPORTED)
          .map(([k, v]) => `${k} (${v})`)
          .join(', ')}`,
      );
  }
}
