// Opens a WebGPU adapter through Dawn and prints it; exits 1 when none exists.
// Plain JavaScript so that set-up can run it before any TypeScript tooling is trusted.
import { create, globals } from 'webgpu';

Object.assign(globalThis, globals);
const gpu = create([]);
const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
if (!adapter) {
  console.error('probe: Dawn found no WebGPU adapter');
  process.exit(1);
}
const info = adapter.info;
console.log(`probe: adapter "${info.description || info.device}" (${info.vendor} ${info.architecture}), features: ${[...adapter.features].sort().join(' ')}`);
process.exit(0);
