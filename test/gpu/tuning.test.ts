// Kernel-set choice per adapter (src/gpu/tuning.ts): software Vulkan drivers get the SIMD-on-CPU set,
// GPUs the shared-memory one; the environment can force either and try other matmul_rows tiles.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { tuningFor, parseRowsTiles, parseMatmulTiles } from '../../src/gpu/tuning.ts';

const info = (o: Partial<GPUAdapterInfo>) => ({ vendor: '', architecture: '', device: '', description: '', ...o }) as GPUAdapterInfo;
const LAVAPIPE = info({ vendor: 'mesa', architecture: 'software', device: 'llvmpipe-llvm-15-0-6-256-bits-', description: 'llvmpipe: Mesa 25.0.7' });
const H100 = info({ vendor: 'nvidia', device: 'nvidia-h100-80gb-hbm3', description: 'NVIDIA: 580.159.04' });

describe('tuningFor', () => {
  it('gives lavapipe and SwiftShader the cpu set and a GPU the gpu set', () => {
    assert.equal(tuningFor(LAVAPIPE, '', '').target, 'cpu');
    assert.equal(tuningFor(info({ vendor: 'google', description: 'SwiftShader Device (Subzero)' }), '', '').target, 'cpu');
    assert.equal(tuningFor(H100, '', '').target, 'gpu');
  });
  it('WEBGPU_VLM_TARGET forces a set and rejects anything else by name', () => {
    assert.equal(tuningFor(LAVAPIPE, 'gpu', '').target, 'gpu');
    assert.equal(tuningFor(H100, 'cpu', '').target, 'cpu');
    assert.throws(() => tuningFor(H100, 'tpu', ''), /WEBGPU_VLM_TARGET must be "gpu" or "cpu", not "tpu"/);
  });
  it('WEBGPU_VLM_ROWS_TILES sets matmul_rows tiles within the kernel\'s bounds', () => {
    assert.deepEqual(tuningFor(LAVAPIPE, '', '8,4,64').rows, { RM: 8, RC: 4, RWG: 64 });
    assert.deepEqual(parseRowsTiles('1,1,1'), { RM: 1, RC: 1, RWG: 1 });
    for (const bad of ['9,4,16', '8,5,16', '8,4', '8,4,0', 'a,b,c']) assert.throws(() => parseRowsTiles(bad), /WEBGPU_VLM_ROWS_TILES must be RM,RC,RWG/);
  });
  it('WEBGPU_VLM_MATMUL_TILES sets the tiled workgroup within shared-memory and invocation limits', () => {
    assert.deepEqual(tuningFor(H100, '', '', '8,32').tiled, { TWX: 8, TWY: 32 });
    assert.deepEqual(tuningFor(H100, '', '', '').tiled, { TWX: 16, TWY: 16 });
    for (const bad of ['32,16', '65,1', '16', '0,16']) assert.throws(() => parseMatmulTiles(bad), /WEBGPU_VLM_MATMUL_TILES must be TWX,TWY/);
  });
});
