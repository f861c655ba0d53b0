// Picks the model implementation from config.json's model_type.
import { existsSync } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { LoadError } from '../io/safetensors.ts';
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
  // A path to one of the model's files (config.json, the weights) is the likeliest mistake: say so, not ENOTDIR.
  if ((await stat(dir).catch(() => null))?.isFile()) {
    const parent = dirname(dir);
    const hint = existsSync(join(parent, 'config.json')) ? `; ${parent} is one` : '';
    throw new LoadError(dir, `a file, not a model directory (the folder with config.json, the weights and the tokenizer files)${hint}`);
  }
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
