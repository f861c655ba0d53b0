// A model directory's JSON files (config, tokenizer, processors, generation settings, chat template),
// each read and parsed once, by one reader, when the directory is opened; the loaders of the runtime
// take what they need from it.
import { existsSync } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { jsonText } from './json.ts';
import { LoadError } from './safetensors.ts';

export const MODEL_DIR_FILES = [
  'config.json',
  'tokenizer.json',
  'tokenizer_config.json',
  'preprocessor_config.json',
  'processor_config.json',
  'generation_config.json',
  'chat_template.json',
  'quantize_config.json',
] as const;

export type ModelDirFile = (typeof MODEL_DIR_FILES)[number];

/**
 * Reads a JSON file that must hold an object: the one JSON reader of the loaders (ModelDir's files, a
 * checkpoint's config.json and index). Errors are LoadErrors naming the file: missing (with `optional`,
 * undefined instead), unreadable, not JSON, or not an object.
 */
export async function readJsonObject(file: string, optional: true): Promise<Record<string, unknown> | undefined>;
export async function readJsonObject(file: string, optional?: false): Promise<Record<string, unknown>>;
export async function readJsonObject(file: string, optional = false): Promise<Record<string, unknown> | undefined> {
  const name = basename(file);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException)?.code;
    if (optional && code === 'ENOENT') return undefined;
    throw new LoadError(file, code === 'ENOENT' ? `${name} is missing` : `cannot read ${name} (${(e as Error).message})`, { cause: e });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new LoadError(file, `${name} is not valid JSON (${(e as Error).message})`, { cause: e });
  }
  if (json === null || typeof json !== 'object' || Array.isArray(json)) {
    const what = json === null ? 'null' : Array.isArray(json) ? 'an array' : `${typeof json} ${jsonText(json, 60)}`;
    throw new LoadError(file, `${name} must be a JSON object, got ${what}`);
  }
  return json as Record<string, unknown>;
}

export class ModelDir {
  private constructor(
    readonly dir: string,
    private readonly files: ReadonlyMap<ModelDirFile, Record<string, unknown> | undefined>,
  ) {}

  /** Reads `names` (default: every file above) of `dir`; a missing file is absent, an unreadable or invalid one an error naming it. */
  static async open(dir: string, names: readonly ModelDirFile[] = MODEL_DIR_FILES): Promise<ModelDir> {
    // A path to one of the model's files (config.json, the weights) is the likeliest mistake: say so, not ENOTDIR.
    if ((await stat(dir).catch(() => null))?.isFile()) {
      const parent = dirname(dir);
      const hint = existsSync(join(parent, 'config.json')) ? `; ${parent} is one` : '';
      throw new LoadError(dir, `a file, not a model directory (the folder with config.json, the weights and the tokenizer files)${hint}`);
    }
    const read = await Promise.all(names.map(async (n) => [n, await readJsonObject(join(dir, n), true)] as const));
    return new ModelDir(dir, new Map(read));
  }

  path(name: ModelDirFile): string {
    return join(this.dir, name);
  }

  /** The parsed file, or undefined when the directory does not have it. */
  json(name: ModelDirFile): Record<string, unknown> | undefined {
    if (!this.files.has(name)) throw new Error(`${this.path(name)}: not read when the model directory was opened`);
    return this.files.get(name);
  }

  /** The parsed file; an error naming it when it is missing. */
  required(name: ModelDirFile): Record<string, unknown> {
    const j = this.json(name);
    if (!j) throw new Error(`${this.path(name)}: file not found (the model directory needs it)`);
    return j;
  }
}
