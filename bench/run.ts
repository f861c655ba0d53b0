// `npm run bench`: the kernel table (bench/kernels.bench.ts: GPU timestamps, GFLOP/s, GB/s, share of
// the roofline, the plot) with onnxruntime's WebGPU EP beside it (bench/peers/ort.bench.ts: the same rows
// with host copies on both sides, ours/ORT), merged into one table and one JSON.
//
//   npm run bench [-- --quick] [--filter REGEX] [--iterations N] [--time MS] [--json FILE] [--no-peers]
// --json FILE: the merged rows (each kernel row with its ORT fields), FILE.roofline.svg and .png.
// Without onnxruntime (offline, --no-peers) the kernel table stands alone and says why.
import { parseArgs } from 'node:util';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PEER_UNAVAILABLE } from './peers/ort.ts';
import { readJsonObject } from '../src/io/model-dir.ts';

const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean' },
    filter: { type: 'string' },
    iterations: { type: 'string' },
    time: { type: 'string' },
    json: { type: 'string' },
    'no-peers': { type: 'boolean' },
    help: { type: 'boolean', short: 'h' },
  },
  strict: true,
});
if (args.help) {
  console.log('npm run bench -- [--quick] [--filter REGEX] [--iterations N] [--time MS] [--json FILE] [--no-peers]');
  process.exit(0);
}

interface KernelRow {
  name: string;
  medianMs: number;
  gflops: number;
  gbps: number;
  roofline: number;
}
interface PeerRow {
  name: string;
  oursMs: number;
  ortMs: number | null;
  ratio: number | null;
  ortValid?: boolean;
}

const here = (p: string) => fileURLToPath(new URL(p, import.meta.url));
const pass = [
  ...(args.quick ? ['--quick'] : []),
  ...(args.filter ? ['--filter', args.filter] : []),
  ...(args.iterations ? ['--iterations', args.iterations] : []),
  ...(args.time ? ['--time', args.time] : []),
];
const tmp = mkdtempSync(join(tmpdir(), 'bench-'));
const script = (path: string, json: string) =>
  spawnSync(process.execPath, ['--import', 'tsx', here(path), ...pass, '--json', json], { stdio: 'inherit' }).status;
try {
  const kernelJson = args.json ?? join(tmp, 'kernels.json');
  if (script('./kernels.bench.ts', kernelJson) !== 0) throw new Error('the kernel bench failed (see above)');
  const kernels = await readJsonObject(kernelJson);
  let peers: { peer: unknown; rows: PeerRow[] } | null = null;
  let why = '--no-peers';
  if (!args['no-peers']) {
    console.log('\n--- the same rows through onnxruntime-node (WebGPU EP) ---');
    const peerJson = join(tmp, 'peers.json');
    const status = script('./peers/ort.bench.ts', peerJson);
    if (status === 0) peers = (await readJsonObject(peerJson)) as { peer: unknown; rows: PeerRow[] };
    else if (status === PEER_UNAVAILABLE) why = 'onnxruntime-node unavailable (see above)';
    else throw new Error(`the peer bench failed with status ${status} (see above)`);
  }
  const byName = new Map((peers?.rows ?? []).map((r) => [r.name, r]));
  const rows = (kernels.rows as KernelRow[]).map((r) => {
    const p = byName.get(r.name);
    return p ? { ...r, oursWithCopiesMs: p.oursMs, ortMs: p.ortMs, ortValid: p.ortValid, ratio: p.ratio } : r;
  });
  const w = Math.max(...rows.map((r) => r.name.length));
  console.log(`\n${peers ? 'kernels (GPU timestamps) and ours/ORT (both with host copies; below 1: ours is faster)' : `kernels (GPU timestamps); no ORT column: ${why}`}`);
  console.log(`${'kernel'.padEnd(w)}  ${'median ms'.padStart(10)}  ${'GFLOP/s'.padStart(8)}  ${'GB/s'.padStart(7)}  ${'roofline'.padStart(8)}  ${'ours/ORT'.padStart(8)}`);
  for (const r of rows) {
    const p = byName.get(r.name);
    const ratio = !p ? (peers ? 'no peer' : '') : p.ratio !== null ? p.ratio.toFixed(2) : 'ORT ✗';
    console.log(
      `${r.name.padEnd(w)}  ${r.medianMs.toFixed(3).padStart(10)}  ${r.gflops.toFixed(2).padStart(8)}  ${r.gbps.toFixed(2).padStart(7)}  ` +
        `${(100 * r.roofline).toFixed(0).padStart(7)}%  ${ratio.padStart(8)}`,
    );
  }
  const ratios = rows.flatMap((r) => ('ratio' in r && typeof r.ratio === 'number' ? [r.ratio] : []));
  if (ratios.length) {
    const geo = Math.exp(ratios.reduce((a, b) => a + Math.log(b), 0) / ratios.length);
    console.log(`geometric mean ours/ORT over the ${ratios.length} rows where ORT validated: ${geo.toFixed(2)} ("ORT ✗": ORT's output was wrong; "no peer": no ORT graph for the row, i.e. a reference variant of ours or a fused kernel ORT has no one op for)`);
  }
  if (args.json) {
    writeFileSync(args.json, JSON.stringify({ ...kernels, peer: peers?.peer ?? { unavailable: why }, rows }, null, 2));
    console.log(`wrote ${args.json} (kernel rows with the ORT columns) and its roofline plot`);
  }
} catch (e) {
  console.error(`bench: ${(e as Error).message}`);
  process.exitCode = 1;
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
