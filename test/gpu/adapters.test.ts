// Choosing an adapter by number or by part of its name (made-up adapters: the machine has one), the list
// of the real ones, and the filter that drops exactly Dawn's two lavapipe warnings.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { chooseAdapter, listAdapters, Gpu, GpuError, type AdapterEntry } from '../../src/gpu/device.ts';
import { withoutDawnWarnings } from '../../src/gpu/quiet.ts';
import { create } from 'webgpu';

const fake = (description: string, vendor: string, architecture: string): AdapterEntry => ({
  adapter: { info: { description, vendor, architecture, device: '' } } as unknown as GPUAdapter,
  requestedAs: [],
});
const ADAPTERS = [fake('NVIDIA GeForce RTX 4090', 'nvidia', 'lovelace'), fake('Intel(R) UHD Graphics 770', 'intel', 'gen-12lp'), fake('llvmpipe (LLVM 15.0.6, 256 bits)', 'mesa', 'software')];

describe('adapters', () => {
  it('are chosen by number, or by a part of the name, vendor or architecture that matches one', () => {
    assert.equal(chooseAdapter(ADAPTERS, 1), ADAPTERS[1]);
    assert.equal(chooseAdapter(ADAPTERS, 'rtx'), ADAPTERS[0]);
    assert.equal(chooseAdapter(ADAPTERS, 'INTEL'), ADAPTERS[1]);
    assert.equal(chooseAdapter(ADAPTERS, 'software'), ADAPTERS[2]);
  });

  it('refuse a number out of range, a name that matches none or several, listing them', () => {
    const listed = /Dawn offers\n  0: NVIDIA GeForce RTX 4090 \(nvidia, lovelace\)\n  1: Intel\(R\) UHD Graphics 770 \(intel, gen-12lp\)\n  2: llvmpipe/;
    const cases: [number | string, RegExp][] = [
      [3, /there is no adapter 3/],
      [-1, /there is no adapter -1/],
      [0.5, /there is no adapter 0.5/],
      ['amd', /"amd" matches no adapter/],
      ['I', /"I" matches 3 adapters \(give an index\)/],
    ];
    for (const [which, message] of cases) {
      assert.throws(() => chooseAdapter(ADAPTERS, which), (e: Error) => e instanceof GpuError && message.test(e.message) && listed.test(e.message), String(which));
    }
  });

  it('are listed once each, the high-performance one first (what Gpu.create() opens by default)', async () => {
    const list = await listAdapters(create([]));
    assert.ok(list.length >= 1);
    assert.ok(list[0].requestedAs.includes('high-performance'), list[0].requestedAs.join());
    const names = list.map((e) => JSON.stringify([e.adapter.info.vendor, e.adapter.info.architecture, e.adapter.info.device, e.adapter.info.description]));
    assert.equal(new Set(names).size, names.length);
    const gpu = await Gpu.create({ adapter: 0 });
    try {
      assert.equal(gpu.info.description, list[0].adapter.info.description);
    } finally {
      gpu.destroy();
    }
    await assert.rejects(Gpu.create({ adapter: 0, powerPreference: 'low-power' }), /give `adapter` or `powerPreference`, not both/);
  });

  it("drop exactly Dawn's two dynamic-buffer warnings from what native code writes to stderr", () => {
    const dawn =
      'Warning: maxDynamicUniformBuffersPerPipelineLayout artificially reduced from 1000000 to 16 to fit dynamic offset allocation limit.\n' +
      'Warning: maxDynamicStorageBuffersPerPipelineLayout artificially reduced from 1000000 to 16 to fit dynamic offset allocation limit.\n';
    const other = 'Warning: maxDynamicUniformBuffersPerPipelineLayout artificially reduced from 1000000 to 16 for another reason.\nError: something else\n';
    assert.equal(withoutDawnWarnings(dawn), '');
    assert.equal(withoutDawnWarnings(other + dawn + 'partial line'), other + 'partial line');
  });
});
