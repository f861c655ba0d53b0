// Peer column: the kernels of bench/kernels.bench.ts side by side with the same computation run by
// onnxruntime-node's WebGPU execution provider (the engine under transformers.js; it carries its own,
// statically linked Dawn), in the same process, on the same kind of adapter request (Vulkan,
// high-performance), at the same shapes (SmolVLM-256M-Instruct's config, or the tiny fixture's with
// --quick), fed the same values.
//
// Each row is validated on both sides against the float64 CPU reference (test/ops/reference.ts) before it
// is timed. Then tinybench takes, per run:
//   ours (with copies):  write the inputs, run the graph, read the output back (wall clock);
//   ours (kernel):       the GPU timestamps around the graph's compute pass, as bench/kernels.bench.ts;
//   ORT (with copies):   `await session.run(hostFeeds)`, which uploads the inputs, runs, and returns
//                        host tensors (wall clock).
// Weights are uploaded once on both sides (our weights, ORT's initializers). The table gives medians and
// ours/ORT of the with-copies times (below 1: ours is faster).
//
//   npm run bench:peers [-- --quick] [--json FILE] [--filter REGEX] [--iterations N] [--time MS]
//                       [--rounds N] [--gemm] [--ort-validation disabled|wgpuOnly|basic|full] [--no-install]
//
// --iterations/--time are per measurement (as tinybench's), split over --rounds interleaved rounds
// (default 3; 1 with --quick): ours, ORT and our kernel time take turns, so that load from elsewhere on a
// shared machine falls on all of them alike.
//
// onnxruntime-node is installed on first use into bench/peers/.deps (see ./ort.ts). When it cannot be
// installed or loaded, or its WebGPU EP cannot start, the bench says why and exits with status 3.
import { parseArgs } from 'node:util';
import { writeFileSync } from 'node:fs';
import { execSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Bench } from 'tinybench';
import { Gpu } from '../../src/gpu/device.ts';
import { GpuTimer } from '../../src/gpu/timing.ts';
import { Graph } from '../../src/graph/graph.ts';
import { Executable } from '../../src/graph/execute.ts';
import { parseIdefics3Config } from '../../src/models/config.ts';
import { Rng } from '../../test/data.ts';
import { encodeModel } from './onnx.ts';
import { makeCases, asNumbers, type HostTensor, type PeerSide } from '../cases/index.ts';
import { loadOrt, PeerUnavailable, PEER_UNAVAILABLE, ORT_VERSION, type Ort, type OrtSession, type OrtTensor } from './ort.ts';
import { readJsonObject } from '../../src/io/model-dir.ts';
import { repoPath } from '../paths.ts';

const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean' },
    json: { type: 'string' },
    filter: { type: 'string' },
    iterations: { type: 'string' },
    time: { type: 'string' },
    gemm: { type: 'boolean' },
    'ort-validation': { type: 'string' },
    'no-install': { type: 'boolean' },
    rounds: { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  },
  strict: true,
});
if (args.help) {
  console.log(
    'npm run bench:peers -- [--quick] [--json FILE] [--filter REGEX] [--iterations N] [--time MS] [--rounds N] [--gemm] [--ort-validation disabled|wgpuOnly|basic|full] [--no-install]',
  );
  process.exit(0);
}

const here = (p: string) => fileURLToPath(new URL(p, import.meta.url));
const configFile = args.quick ? here('../../test/fixtures/smolvlm-tiny/config.json') : here('../../test/fixtures/hf/SmolVLM-256M-Instruct/config.json');
const cfg = parseIdefics3Config(await readJsonObject(configFile), configFile);
const ortValidation = args['ort-validation'] ?? 'basic';
if (!['disabled', 'wgpuOnly', 'basic', 'full'].includes(ortValidation)) throw new Error(`--ort-validation ${ortValidation}: expected disabled, wgpuOnly, basic or full`);

interface Row {
  name: string;
  kernel: string;
  ortGraph: string;
  ortPrecision?: string;
  oursMs: number;
  oursKernelMs: number | null;
  /** null when onnxruntime could not run the graph on its WebGPU EP. */
  ortMs: number | null;
  /** oursMs / ortMs; null unless onnxruntime's output validated. */
  ratio: number | null;
  oursMaxAbs: number;
  /** Whether onnxruntime's output matched the reference; if not, ortError says how it did not. */
  ortValid: boolean;
  ortMaxAbs: number | null;
  ortError?: string;
  samples: { ours: number; oursKernel: number; ort: number };
}

function gitRevision(): string {
  try {
    return execSync('git rev-parse --short HEAD', { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return 'unknown';
  }
}

type Timed = () => Promise<number | void>;

/**
 * Medians of several measurements taken in interleaved rounds, so that each side sees the same machine
 * (on a shared host, load that comes and goes would otherwise favour whichever ran in the quiet spell):
 * every round runs one tinybench per measurement, in an order rotated from round to round, and the
 * median is over the samples of all rounds. A measurement that returns a number reports that duration
 * (GPU timestamps) instead of its wall time.
 */
async function interleaved(fns: Timed[], iterations: number, time: number, rounds: number): Promise<{ ms: number; samples: number }[]> {
  const all: number[][] = fns.map(() => []);
  for (let round = 0; round < rounds; round++) {
    for (let j = 0; j < fns.length; j++) {
      const i = (j + round) % fns.length;
      const bench = new Bench({
        iterations: Math.max(1, Math.ceil(iterations / rounds)),
        time: time / rounds,
        warmup: round === 0,
        warmupIterations: 2,
        warmupTime: 0,
        retainSamples: true,
      });
      bench.add('run', async () => {
        const override = await fns[i]();
        return typeof override === 'number' ? { overriddenDuration: override } : undefined;
      });
      await bench.run();
      const r = bench.tasks[0].result as { state: string; latency?: { samples?: readonly number[] }; error?: Error };
      if (r.state !== 'completed' || !r.latency?.samples) throw new Error(`tinybench: ${r.state} ${r.error?.message ?? ''}`);
      all[i].push(...r.latency.samples);
    }
  }
  return all.map((xs) => {
    const sorted = [...xs].sort((a, b) => a - b);
    const n = sorted.length;
    return { ms: n % 2 ? sorted[(n - 1) / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2, samples: n };
  });
}

function toOrt(ort: Ort, t: HostTensor): OrtTensor {
  return new ort.Tensor(t.type, t.data, t.dims);
}

async function createSession(ort: Ort, model: Uint8Array): Promise<OrtSession> {
  return ort.InferenceSession.create(model, {
    executionProviders: [{ name: 'webgpu', validationMode: ortValidation }],
    graphOptimizationLevel: 'all',
    // Fail rather than time a graph that onnxruntime quietly split onto its CPU provider.
    extra: { session: { disable_cpu_ep_fallback: '1' } },
  });
}

function peerOutput(peer: PeerSide, out: Record<string, OrtTensor>): ArrayLike<number> {
  const t = out[peer.output];
  if (!t) throw new Error(`onnxruntime returned no output "${peer.output}"`);
  return asNumbers(t.data as Float32Array, t.type);
}

let loaded;
try {
  loaded = loadOrt({ install: !args['no-install'] });
} catch (e) {
  if (e instanceof PeerUnavailable) {
    console.error(`peer unavailable: ${e.message}`);
    process.exit(PEER_UNAVAILABLE);
  }
  throw e;
}
const { ort } = loaded;
ort.env.logLevel = 'error';

// Dawn rounds timestamps to ~65 µs unless told otherwise; kernel timing needs the raw counter.
const gpu = await Gpu.create({ dawnFlags: ['disable-dawn-features=timestamp_quantization'] });
try {
  console.log(gpu.describe());
  console.log(`peer: onnxruntime-node ${loaded.version} (wanted ${ORT_VERSION}) from ${loaded.from}, WebGPU EP, validationMode ${ortValidation}`);
  console.log(`shapes from ${configFile}${args.quick ? ' (--quick)' : ''}`);

  // Smoke test: ORT's own Dawn must find an adapter and run beside ours.
  try {
    const s = await createSession(
      ort,
      encodeModel({ nodes: [{ op: 'Softmax', inputs: ['x'], outputs: ['y'], attrs: { axis: -1 } }], inputs: [{ name: 'x', shape: [1, 4] }], outputs: [{ name: 'y', shape: [1, 4] }] }),
    );
    await s.run({ x: new ort.Tensor('float32', Float32Array.from([1, 2, 3, 4]), [1, 4]) });
    await s.release();
  } catch (e) {
    console.error(`peer unavailable: onnxruntime's WebGPU execution provider did not start: ${(e as Error).message}`);
    process.exitCode = PEER_UNAVAILABLE;
    throw new PeerUnavailable((e as Error).message);
  }

  const timer = gpu.has('timestamp-query') ? new GpuTimer(gpu) : null;
  const iterations = Number(args.iterations ?? (args.quick ? 3 : 10));
  const time = Number(args.time ?? (args.quick ? 0 : 300));
  const rounds = Math.max(1, Number(args.rounds ?? (args.quick ? 1 : 3)));
  const filter = args.filter ? new RegExp(args.filter) : null;
  const rows: Row[] = [];
  const rng = new Rng(1234);
  for (const c of makeCases(cfg, { quick: !!args.quick, gemm: !!args.gemm })) {
    if (filter && !filter.test(c.name)) continue;
    const g = new Graph(gpu.tuning);
    const setup = await c.setup(gpu, g, rng);
    const freeWeights = () => {
      for (const n of g.nodes) for (const t of n.inputs) if (t.kind === 'weight' || t.kind === 'state') for (const ch of t.chunks ?? []) gpu.pool.destroy(ch.buffer);
    };
    // Reference-variant rows of our own kernels have no onnxruntime side.
    const peerSide = setup.peer;
    if (!peerSide) {
      freeWeights();
      continue;
    }
    const built = { ...setup, peer: peerSide };
    const exe = await Executable.compile(gpu, g, built.outputs);
    let session: OrtSession | null = null;
    try {
      const pos = built.pos ?? 0;
      // Ours: validate, then time with copies and by timestamps.
      const oursOnce = async () => {
        for (const [t, d] of built.inputs) exe.write(t, d);
        exe.run({ pos });
        return Promise.all(built.outputs.map((o) => exe.read(o)));
      };
      const oursMaxAbs = built.check(await oursOnce());
      // ORT: validate (the first run also compiles its shaders), then time. A graph it cannot place
      // wholly on the WebGPU EP is not timed; one whose output is wrong is timed but gets no ratio.
      const feeds = Object.fromEntries(Object.entries(built.peer.feeds).map(([k, v]) => [k, toOrt(ort, v)]));
      let ortMaxAbs: number | null = null;
      let ortError: string | undefined;
      let ortRuns = false;
      try {
        session = await createSession(ort, encodeModel(built.peer.model));
        const out = peerOutput(built.peer, await session.run(feeds));
        ortRuns = true;
        ortMaxAbs = built.peer.check(out);
      } catch (e) {
        ortError = (e as Error).message;
        process.stderr.write(`ORT ${ortRuns ? 'output wrong' : 'failed'}: ${c.name}: ${ortError}\n`);
      }

      const s = session;
      const fns: Timed[] = [async () => void (await oursOnce())];
      if (s && ortRuns) fns.push(async () => void (await s.run(feeds)));
      if (timer) fns.push(async () => (await timer.time((w) => exe.run({ pos }, w))) / 1e6);
      const [ours, ...rest] = await interleaved(fns, iterations, time, rounds);
      const peer = s && ortRuns ? rest.shift()! : null;
      const kernel = timer ? rest.shift()! : null;
      const ortValid = ortError === undefined;
      rows.push({
        name: c.name,
        kernel: c.kernel,
        ortGraph: built.peer.graph,
        ortPrecision: built.peer.precision,
        oursMs: ours.ms,
        oursKernelMs: kernel?.ms ?? null,
        ortMs: peer?.ms ?? null,
        ratio: peer && ortValid ? ours.ms / peer.ms : null,
        oursMaxAbs,
        ortValid,
        ortMaxAbs,
        ortError,
        samples: { ours: ours.samples, oursKernel: kernel?.samples ?? 0, ort: peer?.samples ?? 0 },
      });
      const r = rows[rows.length - 1];
      process.stderr.write(
        `${ortValid ? 'validated' : 'validated (ours only)'} and timed: ${c.name}: ours ${r.oursMs.toFixed(3)} ms (kernel ${r.oursKernelMs?.toFixed(3) ?? '-'}), ` +
          `ORT ${r.ortMs?.toFixed(3) ?? '-'} ms${ortValid ? '' : ' (wrong output)'}, ratio ${r.ratio?.toFixed(2) ?? '-'}\n`,
      );
    } finally {
      await session?.release();
      exe.dispose();
      freeWeights();
    }
  }

  const w = Math.max(...rows.map((r) => r.name.length), 2);
  console.log(`\nmedians; "with copies" = write inputs + run + read output (ours) vs session.run on host tensors (ORT); kernel = ${timer ? 'GPU timestamps' : 'n/a (no timestamp-query)'}`);
  console.log(`${'op, shape'.padEnd(w)}  ${'ours ms'.padStart(9)}  ${'kernel ms'.padStart(9)}  ${'ORT ms'.padStart(9)}  ${'ours/ORT'.padStart(8)}`);
  for (const r of rows) {
    const ortMs = r.ortMs === null ? 'failed' : `${r.ortMs.toFixed(3)}${r.ortValid ? '' : '✗'}`;
    const note = [r.ortPrecision ? 'ORT all-fp16' : '', r.ortValid ? '' : r.ortMs === null ? 'ORT could not run it' : 'ORT output wrong, see JSON ortError'].filter(Boolean).join('; ');
    console.log(
      `${r.name.padEnd(w)}  ${r.oursMs.toFixed(3).padStart(9)}  ${(r.oursKernelMs?.toFixed(3) ?? '-').padStart(9)}  ${ortMs.padStart(9)}  ${(r.ratio?.toFixed(2) ?? '-').padStart(8)}${note ? `  (${note})` : ''}`,
    );
  }
  const rated = rows.filter((r) => r.ratio !== null);
  if (rated.length) {
    const geo = Math.exp(rated.reduce((s, r) => s + Math.log(r.ratio!), 0) / rated.length);
    console.log(`geometric mean ours/ORT over the ${rated.length} rows where ORT validated: ${geo.toFixed(2)}`);
  }
  if (args.json) {
    const out = {
      date: new Date().toISOString(),
      revision: gitRevision(),
      adapter: { vendor: gpu.info.vendor, architecture: gpu.info.architecture, device: gpu.info.device, description: gpu.info.description },
      features: [...gpu.features].sort(),
      peer: {
        name: 'onnxruntime-node',
        version: loaded.version,
        executionProvider: 'webgpu',
        validationMode: ortValidation,
        linear: args.gemm ? 'Gemm transB=1' : 'MatMul with transposed initializer',
        note: "ORT uses its own statically linked Dawn and does not report its adapter; it asks for a high-performance adapter on Vulkan, as we do",
      },
      config: repoPath(configFile),
      quick: !!args.quick,
      timing: { iterations, timeMs: time, rounds, kernel: timer ? 'gpu-timestamp' : null },
      rows,
    };
    writeFileSync(args.json, JSON.stringify(out, null, 2));
    console.log(`wrote ${args.json}`);
  }
  timer?.destroy();
} catch (e) {
  if (!(e instanceof PeerUnavailable)) throw e;
} finally {
  gpu.destroy();
}
