// Shared test utilities: one GPU per test file, seeded random data, weight upload through the same
// path as checkpoints, running a graph, and closeness checks that report the max error and first bad index.
import { after } from 'node:test';
import { Gpu, type GpuOptions } from '../src/gpu/device.ts';
import { Graph, type Step } from '../src/graph/graph.ts';
import { Executable } from '../src/graph/execute.ts';
import type { Tensor } from '../src/graph/tensor.ts';
export { Rng, encode, weight, assertClose } from './data.ts';

const gpus = new Map<string, Promise<Gpu>>();
// Registered at the top level, so it runs once the whole file's tests are done.
after(async () => {
  for (const g of gpus.values()) (await g).destroy();
});

/** The GPU for this test file (destroyed when the file's tests end: Dawn busy-loops until then). */
export function testGpu(opts: GpuOptions = {}): Promise<Gpu> {
  const key = JSON.stringify(opts);
  let g = gpus.get(key);
  if (!g) {
    g = Gpu.create(opts);
    gpus.set(key, g);
  }
  return g;
}

/** Compiles and runs a graph once, writing the inputs and reading the outputs. */
export async function run(
  gpu: Gpu,
  g: Graph,
  outputs: Tensor[],
  inputs: [Tensor, ArrayBufferView][] = [],
  step: Step = { pos: 0 },
): Promise<Float32Array[]> {
  const exe = await Executable.compile(gpu, g, outputs);
  try {
    for (const [t, d] of inputs) exe.write(t, d);
    exe.run(step);
    return (await Promise.all(outputs.map((o) => exe.read(o)))) as Float32Array[];
  } finally {
    exe.dispose();
  }
}

export { Graph };
