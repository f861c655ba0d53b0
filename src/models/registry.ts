// The model families this runtime runs, found by config.json's model_type. Each family is described
// once, beside its model (family.ts); nothing else knows the model types.
import type { Gpu } from '../gpu/device.ts';
import { ModelDir } from '../io/model-dir.ts';
import type { ModelFamily } from './family.ts';
import { idefics3Family } from './smolvlm.ts';
import { llavaFamily } from './llava.ts';
import { llavaNextFamily } from './llava-next.ts';
import type { VisionLanguageModel } from './vlm.ts';
import type { ModelLoadOptions } from './weights.ts';

export const FAMILIES: readonly ModelFamily[] = [idefics3Family, llavaFamily, llavaNextFamily];

/** The family of a model directory, from its config.json's model_type. */
export function familyOf(md: ModelDir): ModelFamily {
  const file = md.path('config.json');
  const t = md.required('config.json').model_type;
  if (typeof t !== 'string') throw new Error(`${file}: no "model_type" string`);
  const family = FAMILIES.find((f) => f.modelType === t);
  if (!family) {
    throw new Error(`${file}: model_type "${t}" is not supported; supported: ${FAMILIES.map((f) => `${f.modelType} (${f.name})`).join(', ')}`);
  }
  return family;
}

/** Loads the model of a directory (opened already, or a path) with its family's loader. */
export async function loadModelDir(gpu: Gpu, dir: string | ModelDir, opts: ModelLoadOptions = {}): Promise<VisionLanguageModel> {
  const md = typeof dir === 'string' ? await ModelDir.open(dir, ['config.json', 'quantize_config.json']) : dir;
  return familyOf(md).load(gpu, md.dir, { ...opts, config: md.required('config.json'), quantizeConfig: md.json('quantize_config.json') ?? null });
}
