// The GPU timer (src/gpu/timing.ts), the one timestamp-query reader of the runtime and the benches: one
// pass timed, and a plan profiled per section (Executable.runProfiled), each a positive device time no
// longer than the wall time around it.
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { Executable } from '../../src/graph/execute.ts';
import { Graph } from '../../src/graph/graph.ts';
import { GpuTimer } from '../../src/gpu/timing.ts';
import { activation, add } from '../../src/ops/elementwise.ts';
import { testGpu } from '../helpers.ts';

it('times one pass, and each section of a plan', async (t) => {
  const gpu = await testGpu();
  if (!gpu.has('timestamp-query')) return t.skip('no timestamp-query on this adapter');
  const g = new Graph(gpu.tuning);
  const x = g.input('x', [64, 1000], 'f32');
  g.section('first');
  const y = add(g, x, x);
  g.section('second');
  const z = activation(g, add(g, y, x), 'silu');
  const exe = await Executable.compile(gpu, g, [z]);
  const timer = new GpuTimer(gpu);
  try {
    exe.write(x, new Float32Array(64 * 1000).fill(1));
    exe.run(); // compiles the pipelines on llvmpipe, outside the timing
    await gpu.device.queue.onSubmittedWorkDone();
    let t0 = performance.now();
    const ns = await timer.time((w) => exe.run({ pos: 0 }, w));
    const wallMs = performance.now() - t0;
    assert.ok(ns > 0 && ns / 1e6 <= wallMs, `one pass: ${ns} ns in ${wallMs} ms of wall time`);
    t0 = performance.now();
    const sections = await exe.runProfiled();
    const wall2 = performance.now() - t0;
    assert.deepEqual([...sections.keys()], ['first', 'second']);
    const sum = [...sections.values()].reduce((a, b) => a + b, 0);
    assert.ok([...sections.values()].every((ms) => ms > 0), JSON.stringify([...sections]));
    assert.ok(sum <= wall2, `sections ${sum} ms in ${wall2} ms of wall time`);
  } finally {
    timer.destroy();
    exe.dispose();
  }
});
