// The shader preprocessor of src/gpu/pipelines.ts: `//#if ENABLE` blocks kept only where the module has
// that enable (subgroup code), line numbers preserved, unbalanced blocks named with file and line.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { selectBlocks } from '../../src/gpu/pipelines.ts';

const SRC = ['a', '//#if subgroups', 'b', '//#else', 'c', '//#endif', 'd'].join('\n');

describe('selectBlocks', () => {
  it('keeps the //#if branch with the enable and the //#else branch without, line for line', () => {
    assert.deepEqual(selectBlocks(SRC, new Set(['subgroups']), 'x').split('\n'), ['a', '', 'b', '', '', '', 'd']);
    assert.deepEqual(selectBlocks(SRC, new Set(), 'x').split('\n'), ['a', '', '', '', 'c', '', 'd']);
  });
  it('nests', () => {
    const src = ['//#if f16', '//#if subgroups', 'both', '//#endif', 'f16', '//#endif'].join('\n');
    assert.deepEqual(selectBlocks(src, new Set(['f16']), 'x').split('\n').filter(Boolean), ['f16']);
    assert.deepEqual(selectBlocks(src, new Set(['f16', 'subgroups']), 'x').split('\n').filter(Boolean), ['both', 'f16']);
  });
  it('names the file and line of an unbalanced block', () => {
    assert.throws(() => selectBlocks('//#if subgroups\nx', new Set(), 'matmul'), /shaders\/matmul\.wgsl:1: \/\/#if without \/\/#endif/);
    assert.throws(() => selectBlocks('x\n//#endif', new Set(), 'norm'), /shaders\/norm\.wgsl:2: \/\/#endif without \/\/#if/);
  });
  it('every shader compiles its blocks balanced with and without subgroups', async () => {
    const { readdirSync, readFileSync } = await import('node:fs');
    const { SHADER_DIR } = await import('../../src/gpu/pipelines.ts');
    for (const f of readdirSync(SHADER_DIR).filter((n) => n.endsWith('.wgsl'))) {
      const src = readFileSync(`${SHADER_DIR}/${f}`, 'utf8');
      for (const en of [new Set<string>(), new Set(['subgroups'])]) selectBlocks(src, en, f.replace('.wgsl', ''));
    }
  });
});
