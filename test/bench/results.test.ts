// Committed bench results name no machine's directories: paths in them are relative to the repository
// (bench/paths.ts), so a result reads the same on every clone.
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { repoPath } from '../../bench/paths.ts';

const RESULTS = fileURLToPath(new URL('../../bench/results/', import.meta.url));

it('bench results hold no absolute paths', () => {
  const files = readdirSync(RESULTS).filter((f) => /\.(json|svg)$/.test(f));
  assert.ok(files.length > 5, `${files.length} result files`);
  for (const f of files) {
    const m = /(?:"|\s|^)(\/(?:work|root|tmp|home|Users|mnt|var)\/[^"\s<]*)/m.exec(readFileSync(join(RESULTS, f), 'utf8'));
    assert.equal(m, null, `${f}: ${m?.[1]}`);
  }
});

it('repoPath records a file in the repository relative to it', () => {
  assert.equal(repoPath(fileURLToPath(new URL('../../bench/configs/llava-1.5-7b.json', import.meta.url))), join('bench', 'configs', 'llava-1.5-7b.json'));
  assert.equal(repoPath('/elsewhere/config.json'), '/elsewhere/config.json');
});
