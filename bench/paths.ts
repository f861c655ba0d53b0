// Paths as bench results record them: relative to the repository, so that a committed result names no
// machine's directories.
import { relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const REPO = fileURLToPath(new URL('..', import.meta.url));

/** `file` relative to the repository root (as given when it lies outside it). */
export function repoPath(file: string): string {
  const r = relative(REPO, file);
  return r.startsWith('..') ? file : r;
}
