// JSON in error messages: a value shown shortened, whatever it is. (JSON files are read by
// readJsonObject in model-dir.ts.)

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
