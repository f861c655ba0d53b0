// Kernel microbenchmarks at the shapes of SmolVLM-256M-Instruct (read from its config.json), or of the
// tiny fixture with --quick. Every kernel's output is first validated against the float64 CPU reference
// (test/ops/reference.ts); then tinybench times it, with the device time of each run taken from GPU
// timestamp queries where the adapter offers them (wall time otherwise). Rows report the median, GFLOP/s
// or GB/s from napkin math, and the share of this device's roofline (bandwidth from a large buffer copy,
// compute from our best matmul, both measured in the same run).
//
//   npm run bench [-- --quick] [--json FILE] [--filter REGEX] [--iterations N] [--time MS]
// With --json FILE.json, the roofline plot goes to FILE.roofline.svg and FILE.roofline.png.
import { parseArgs } from 'node:util';
import { writeFileSync } from 'node:fs';
import { execSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Bench } from 'tinybench';
import { Gpu } from '../src/gpu/device.ts';
import { GpuTimer } from '../src/gpu/timing.ts';
import { Graph } from '../src/graph/graph.ts';
import { Executable } from '../src/graph/execute.ts';
import { parseIdefics3Config } from '../src/models/config.ts';
import { Rng } from '../test/data.ts';
import { makeCases } from './cases/index.ts';
import { rooflineSvg, writeRoofline, copyBandwidth } from './roofline.ts';
import { readJsonObject } from '../src/io/model-dir.ts';
import { repoPath } from './paths.ts';

const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean' },
    json: { type: 'string' },
    filter: { type: 'string' },
    iterations: { type: 'string' },
    time: { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  },
  strict: true,
});
if (args.help) {
  console.log('npm run bench -- [--quick] [--json FILE] [--filter REGEX] [--iterations N] [--time MS]');
  process.exit(0);
}

const here = (p: string) => fileURLToPath(new URL(p, import.meta.url));
const configFile = args.quick ? here('../test/fixtures/smolvlm-tiny/config.json') : here('../test/fixtures/hf/SmolVLM-256M-Instruct/config.json');
const cfg = parseIdefics3Config(await readJsonObject(configFile), configFile);

/** The rows (shared with the peer bench): validated against float64 before they are timed. */
const cases = makeCases(cfg, { quick: !!args.quick, gemm: false });

interface Row {
  name: string;
  kernel: string;
  medianMs: number;
  wallMedianMs: number;
  gflops: number;
  gbps: number;
  intensity: number;
  roofline: number;
  samples: number;
  timing: 'gpu-timestamp' | 'wall';
}

async function measure(gpu: Gpu, timer: GpuTimer | null, exe: Executable, pos: number, iterations: number, time: number) {
  const wall: number[] = [];
  const bench = new Bench({ iterations, time, warmupIterations: 2, warmupTime: 0, retainSamples: true });
  bench.add('run', async () => {
    const t0 = performance.now();
    let gpuMs: number | undefined;
    if (timer) gpuMs = (await timer.time((w) => exe.run({ pos }, w))) / 1e6;
    else {
      exe.run({ pos });
      await gpu.device.queue.onSubmittedWorkDone();
    }
    wall.push(performance.now() - t0);
    return gpuMs !== undefined ? { overriddenDuration: gpuMs } : undefined;
  });
  await bench.run();
  const r = bench.tasks[0].result as { state: string; latency?: { p50: number; samplesCount: number }; error?: Error };
  if (r.state !== 'completed' || !r.latency) throw new Error(`tinybench: ${r.state} ${r.error?.message ?? ''}`);
  wall.sort((a, b) => a - b);
  return { median: r.latency.p50, samples: r.latency.samplesCount, wallMedian: wall[Math.floor(wall.length / 2)] };
}


function gitRevision(): string {
  try {
    return execSync('git rev-parse --short HEAD', { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return 'unknown';
  }
}

// Dawn rounds timestamps to ~65 µs unless told otherwise; kernel timing needs the raw counter.
const gpu = await Gpu.create({ dawnFlags: ['disable-dawn-features=timestamp_quantization'] });
try {
  console.log(gpu.describe());
  console.log(`shapes from ${configFile}${args.quick ? ' (--quick)' : ''}`);
  const timer = gpu.has('timestamp-query') ? new GpuTimer(gpu) : null;
  const iterations = Number(args.iterations ?? (args.quick ? 3 : 10));
  const time = Number(args.time ?? (args.quick ? 0 : 300));
  const filter = args.filter ? new RegExp(args.filter) : null;
  const bandwidth = await copyBandwidth(gpu, timer);
  const rows: Row[] = [];
  const rng = new Rng(1234);
  for (const c of cases) {
    if (filter && !filter.test(c.name)) continue;
    const g = new Graph(gpu.tuning);
    const built = await c.setup(gpu, g, rng);
    const exe = await Executable.compile(gpu, g, built.outputs);
    try {
      for (const [t, d] of built.inputs) exe.write(t, d);
      exe.run({ pos: built.pos ?? 0 });
      built.check(await Promise.all(built.outputs.map((o) => exe.read(o))));
      const m = await measure(gpu, timer, exe, built.pos ?? 0, iterations, time);
      rows.push({
        name: c.name,
        kernel: c.kernel,
        medianMs: m.median,
        wallMedianMs: m.wallMedian,
        gflops: c.flops / (m.median / 1000) / 1e9,
        gbps: c.bytes / (m.median / 1000) / 1e9,
        intensity: c.flops / c.bytes,
        roofline: 0,
        samples: m.samples,
        timing: timer ? 'gpu-timestamp' : 'wall',
      });
      const r = rows[rows.length - 1];
      process.stderr.write(`validated and timed: ${c.name}: ${r.medianMs.toFixed(3)} ms, ${r.gflops.toFixed(2)} GFLOP/s, ${r.gbps.toFixed(2)} GB/s\n`);
    } finally {
      exe.dispose();
      // Weights and state buffers (caches) the case uploaded.
      for (const n of g.nodes) for (const t of n.inputs) if (t.kind === 'weight' || t.kind === 'state') for (const ch of t.chunks ?? []) gpu.pool.destroy(ch.buffer);
    }
  }
  // Compute roof: the best matmul rate measured in this run.
  // (Without a matmul row in this run — a --filter — there is no compute roof: NaN, printed as "-".)
  const matmuls = rows.filter((r) => r.kernel.startsWith('matmul')).map((r) => r.gflops);
  const compute = matmuls.length ? Math.max(...matmuls) : Number.NaN;
  for (const r of rows) {
    const roof = Number.isNaN(compute) ? r.intensity * bandwidth : Math.min(compute, r.intensity * bandwidth);
    r.roofline = r.intensity > 0 && !Number.isNaN(compute) ? r.gflops / roof : r.gbps / bandwidth;
  }
  const w = Math.max(...rows.map((r) => r.name.length));
  console.log(`\nroofline: copy bandwidth ${bandwidth.toFixed(1)} GB/s, best matmul ${compute.toFixed(1)} GFLOP/s; times are ${timer ? 'GPU timestamps' : 'wall clock'} (median)`);
  console.log(`${'kernel'.padEnd(w)}  ${'median ms'.padStart(10)}  ${'wall ms'.padStart(9)}  ${'GFLOP/s'.padStart(8)}  ${'GB/s'.padStart(7)}  ${'roofline'.padStart(8)}`);
  for (const r of rows) {
    console.log(
      `${r.name.padEnd(w)}  ${r.medianMs.toFixed(3).padStart(10)}  ${r.wallMedianMs.toFixed(2).padStart(9)}  ${r.gflops.toFixed(2).padStart(8)}  ${r.gbps.toFixed(2).padStart(7)}  ${(100 * r.roofline).toFixed(0).padStart(7)}%`,
    );
  }
  if (args.json) {
    const out = {
      date: new Date().toISOString(),
      revision: gitRevision(),
      adapter: { vendor: gpu.info.vendor, architecture: gpu.info.architecture, device: gpu.info.device, description: gpu.info.description },
      features: [...gpu.features].sort(),
      config: repoPath(configFile),
      quick: !!args.quick,
      roofline: { bandwidthGBps: bandwidth, computeGFLOPs: compute },
      rows,
    };
    writeFileSync(args.json, JSON.stringify(out, null, 2));
    const base = args.json.replace(/\.json$/, '') + '.roofline';
    const svg = rooflineSvg(rows, bandwidth, compute, `${gpu.info.description || gpu.info.vendor}: ${rows.length} kernels (${timer ? 'GPU timestamps' : 'wall clock'})`);
    const files = Number.isNaN(compute) ? [] : await writeRoofline(base, svg);
    console.log(`wrote ${[args.json, ...files].join(', ')}`);
  }
  timer?.destroy();
} finally {
  gpu.destroy();
}
