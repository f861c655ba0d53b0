// Reads a JSON object file of a model folder (tokenizer, processor, chat template, generation configs),
// with errors that name the file.
import { readFile } from 'node:fs/promises';

export async function readJsonObject(file: string, optional: true): Promise<Record<string, unknown> | undefined>;
export async function readJsonObject(file: string, optional?: false): Promise<Record<string, unknown>>;
export async function readJsonObject(file: string, optional = false): Promise<Record<string, unknown> | undefined> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    if (optional && (e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new Error(`${file}: cannot read (${(e as Error).message})`);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new Error(`${file}: not valid JSON (${(e as Error).message})`);
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new Error(`${file}: expected a JSON object at the top level`);
  }
  return value as Record<string, unknown>;
}

/** JSON text of a value for an error message, shortened; never throws (deep nesting, cycles, BigInt). */
export function jsonText(v: unknown, max = 200): string {
  let s: string;
  try {
    s = JSON.stringify(v) ?? String(v);
  } catch {
    s = Array.isArray(v) ? '[...] (too deeply nested to print)' : typeof v === 'object' ? '{...} (too deeply nested to print)' : String(v);
  }
  return s.length > max ? `${s.slice(0, max - 3)}...` : s;
}
