/**
 * Seeded fuzzer for the loaders (issue "Hardening", item 1): the run loop, its summary and the replay of
 * one case. The PRNG is in rng.ts, the mutations in mutators.ts, the loaders run in targets.ts, the
 * command line in cli.ts.
 *
 * Mutates valid inputs and checks that every case ends either in a result or in the loader's typed
 * error, never in another exception, a hang or unbounded memory:
 *
 *  - `safetensors`: mutated safetensors bytes -> temp file -> `SafetensorsFile.open` + `read()` of every
 *    tensor (typed error: `LoadError`).
 *  - `index`: mutated `model.safetensors.index.json` text -> `Checkpoint.open` on a model directory holding
 *    config.json and the two good shards of a 2-shard split of the tiny SmolVLM (`LoadError`).
 *  - `config`: mutated config.json text -> `JSON.parse` -> `parseIdefics3Config` / `parseLlavaConfig`
 *    (`ConfigError`; a JSON.parse error is the caller's case, counted as "rejected by JSON.parse"), and
 *    `Checkpoint.open` of a directory with that config.json, which must give a `LoadError` exactly when the
 *    text is not a JSON object.
 *
 * Every case is derived from (seed, case number) alone, so `--replay SEED:CASE` reruns one case.
 *
 *   npm run fuzz -- --cases 100000 [--seed N] [--target all|safetensors|index|config] [--replay SEED:CASE]
 *
 * Importable: `runFuzz({ cases, seed, targets })` returns a summary (see test/fuzz/fuzz.test.ts).
 */
import * as fs from 'node:fs';
import * as v8 from 'node:v8';
import * as vm from 'node:vm';
import { performance } from 'node:perf_hooks';
import { Worker } from 'node:worker_threads';
import { generateCase, type Mutated } from './mutators.ts';
import { ALL_TARGETS, detach, errorText, execCase, removeTmp, setup, type Outcome, type Target } from './targets.ts';

// ---------------------------------------------------------------------------------------------------
// Watchdog: a worker thread that kills the process if one case blocks the event loop too long.

const WATCHDOG_SRC = `
const { workerData } = require('node:worker_threads');
const fs = require('node:fs');
const { sab, limitMs, tmp } = workerData;
const state = new Int32Array(sab, 0, 4);
const start = new Float64Array(sab, 16, 1);
const text = new Uint8Array(sab, 24);
setInterval(() => {
  if (Atomics.load(state, 0) !== 1) return;
  const ms = Date.now() - start[0];
  if (ms <= limitMs) return;
  const desc = Buffer.from(text.subarray(0, Atomics.load(state, 1))).toString('utf8');
  fs.writeSync(2, '\\n[fuzz] WATCHDOG: case running for ' + ms + ' ms (limit ' + limitMs + ' ms), event loop blocked; killing the process.\\n[fuzz] ' + desc + '\\n');
  try { fs.rmSync(tmp, { recursive: true, force: true }); } catch {}
  process.kill(process.pid, 'SIGKILL');
}, 100);
`;

class Watchdog {
  private readonly sab = new SharedArrayBuffer(24 + 4096);
  private readonly state = new Int32Array(this.sab, 0, 4);
  private readonly start = new Float64Array(this.sab, 16, 1);
  private readonly text = new Uint8Array(this.sab, 24);
  private readonly worker: Worker;

  constructor(limitMs: number, tmp: string) {
    this.worker = new Worker(WATCHDOG_SRC, { eval: true, workerData: { sab: this.sab, limitMs, tmp }, execArgv: [] });
    this.worker.unref();
  }

  begin(desc: string): void {
    const { written } = new TextEncoder().encodeInto(desc, this.text);
    Atomics.store(this.state, 1, written);
    this.start[0] = Date.now();
    Atomics.store(this.state, 0, 1);
  }

  end(): void {
    Atomics.store(this.state, 0, 0);
  }

  async stop(): Promise<void> {
    this.end();
    await this.worker.terminate();
  }
}

// ---------------------------------------------------------------------------------------------------
// The run loop.

export interface FuzzOptions {
  cases: number;
  seed?: number;
  targets?: readonly Target[] | 'all';
  /** Per-case time bound in ms (default 2000); a case over it is a hang. The watchdog fires at 10x. */
  timeBoundMs?: number;
  /** Header cap passed to the loaders (default 1 MiB). */
  maxHeaderBytes?: number;
  /** Heap growth bound in bytes (default 64 x maxHeaderBytes). */
  memBoundBytes?: number;
  /** Progress lines (on stderr by default) every `progressEvery` cases. */
  progress?: boolean | ((line: string) => void);
  progressEvery?: number;
  /** First case number (default 0). */
  firstCase?: number;
  /** Stop (with a summary of the cases run) after this many seconds. */
  maxSeconds?: number;
  /** Stop (with a summary of the cases run) once aborted; checked between cases. */
  signal?: AbortSignal;
}

export interface CaseFailure {
  kind: 'failure' | 'hang';
  target: Target;
  seed: number;
  caseNo: number;
  seedFile: string;
  mutation: string;
  what: string;
  stack?: string;
  ms: number;
  replay: string;
}

export interface TargetStats {
  cases: number;
  accepted: number;
  rejected: number;
  jsonRejected: number;
  failures: number;
  hangs: number;
  maxMs: number;
  totalMs: number;
}

export interface FuzzSummary {
  seed: number;
  /** Cases actually run (fewer than requested when stopped early). */
  cases: number;
  requestedCases: number;
  /** Why the run stopped before `requestedCases`, if it did. */
  stoppedEarly?: string;
  firstCase: number;
  targets: Target[];
  perTarget: Record<string, TargetStats>;
  accepted: number;
  rejected: number;
  jsonRejected: number;
  failureCount: number;
  hangCount: number;
  /** The first 100 failures and hangs. */
  failures: CaseFailure[];
  /** Typed-error groups (all targets), most frequent first. */
  groups: { key: string; count: number }[];
  /** Typed errors that wrap an unexpected exception ("unexpected error while ..."). */
  wrapped: { key: string; count: number }[];
  jsonGroups: { key: string; count: number }[];
  memory: {
    bound: number;
    baselineHeapUsed: number;
    peakHeapUsed: number;
    peakHeapGrowth: number;
    maxCaseGrowth: number;
    maxCaseGrowthAt: string;
    retainedGrowth: number;
    /** Largest heap right after a forced GC during the run, minus the baseline. */
    maxLiveGrowth: number;
    baselineRss: number;
    peakRss: number;
    gcAvailable: boolean;
    forcedGcs: number;
    ok: boolean;
  };
  fds: { start: number; end: number } | null;
  slowest: { target: Target; caseNo: number; ms: number; mutation: string } | null;
  timeBoundMs: number;
  elapsedMs: number;
  casesPerSec: number;
  ok: boolean;
}

function getGc(): (() => void) | undefined {
  const g = (globalThis as { gc?: unknown }).gc;
  if (typeof g === 'function') return g as () => void;
  try {
    v8.setFlagsFromString('--expose-gc');
    const f = vm.runInNewContext('gc') as unknown;
    return typeof f === 'function' ? (f as () => void) : undefined;
  } catch {
    return undefined;
  }
}

function openFds(): number | null {
  try {
    return fs.readdirSync('/proc/self/fd').length;
  } catch {
    return null;
  }
}

export function parseTargets(spec: string | readonly Target[] | undefined): Target[] {
  if (spec === undefined || spec === 'all') return [...ALL_TARGETS];
  const list = typeof spec === 'string' ? spec.split(',').map((s) => s.trim()).filter(Boolean) : [...spec];
  if (list.includes('all')) return [...ALL_TARGETS];
  const out: Target[] = [];
  for (const t of list) {
    if (!(ALL_TARGETS as readonly string[]).includes(t)) throw new Error(`unknown target ${JSON.stringify(t)}; expected all, ${ALL_TARGETS.join(', ')}`);
    if (!out.includes(t as Target)) out.push(t as Target);
  }
  return out.sort((a, b) => ALL_TARGETS.indexOf(a) - ALL_TARGETS.indexOf(b));
}

function describeCase(target: Target, seed: number, caseNo: number, m: Mutated): string {
  return `target=${target} seed=${seed} case=${caseNo} input=${m.seed} (${m.bytes.byteLength} bytes) ops: ${m.ops.join(' | ')}`;
}

function mib(n: number): string {
  return `${(n / 1048576).toFixed(1)} MiB`;
}

export async function runFuzz(opts: FuzzOptions): Promise<FuzzSummary> {
  const seed = (opts.seed ?? 1) >>> 0;
  const targets = parseTargets(opts.targets === 'all' ? undefined : opts.targets);
  const cap = opts.maxHeaderBytes ?? 1 << 20;
  const bound = opts.memBoundBytes ?? 64 * cap;
  const timeBound = opts.timeBoundMs ?? 2000;
  const first = opts.firstCase ?? 0;
  const every = opts.progressEvery ?? 2000;
  const log = opts.progress === true ? (s: string) => process.stderr.write(s + '\n') : typeof opts.progress === 'function' ? opts.progress : undefined;

  const ctx = await setup(cap);
  const gc = getGc();
  let forcedGcs = 0;
  const collect = () => {
    if (gc) {
      gc();
      forcedGcs++;
    }
  };
  const watchdog = new Watchdog(10 * timeBound + 1000, ctx.tmp);
  const perTarget: Record<string, TargetStats> = {};
  for (const t of targets) perTarget[t] = { cases: 0, accepted: 0, rejected: 0, jsonRejected: 0, failures: 0, hangs: 0, maxMs: 0, totalMs: 0 };
  const groups = new Map<string, number>();
  const wrapped = new Map<string, number>();
  const jsonGroups = new Map<string, number>();
  const failures: CaseFailure[] = [];
  let failureCount = 0;
  let hangCount = 0;
  let slowest: FuzzSummary['slowest'] = null;
  const bump = (m: Map<string, number>, k: string) => m.set(k, (m.get(k) ?? 0) + 1);

  const fdStart = openFds();
  collect();
  const base = process.memoryUsage();
  let peakHeap = base.heapUsed;
  let peakRss = base.rss;
  let maxCaseGrowth = 0;
  let maxCaseGrowthAt = '';
  const t0 = performance.now();
  let ran = 0;
  let stoppedEarly: string | undefined;
  // Heap after the last forced GC (live data plus whatever the loop's frame still references).
  let live = base.heapUsed;
  let maxLive = base.heapUsed;
  // The loop runs in its own frame, so nothing of the last case stays reachable when it returns.
  const loop = async (): Promise<void> => {
    for (let i = 0; i < opts.cases; i++) {
      if (opts.signal?.aborted) {
        stoppedEarly = 'interrupted';
        break;
      }
      if (opts.maxSeconds !== undefined && performance.now() - t0 > opts.maxSeconds * 1000) {
        stoppedEarly = `time budget of ${opts.maxSeconds} s reached`;
        break;
      }
      ran++;
      const caseNo = first + i;
      const target = targets[caseNo % targets.length];
      let m: Mutated;
      try {
        m = generateCase(ctx, target, seed, caseNo);
      } catch (e) {
        // A bug of the fuzzer itself: record it and go on.
        m = { bytes: new Uint8Array(0), seed: '(generation failed)', ops: [`generation threw ${errorText(e)}`] };
        failureCount++;
        perTarget[target].cases++;
        perTarget[target].failures++;
        if (failures.length < 100) {
          failures.push({
            kind: 'failure', target, seed, caseNo, seedFile: m.seed, mutation: '', what: `fuzz harness: ${m.ops[0]}`,
            stack: e instanceof Error ? e.stack?.split('\n').slice(0, 6).join('\n') : undefined, ms: 0,
            replay: `npm run fuzz -- --replay ${seed}:${caseNo} --target ${target}`,
          });
        }
        log?.(`[fuzz] FAILURE target=${target} case=${caseNo}: ${m.ops[0]}`);
        continue;
      }
      const desc = describeCase(target, seed, caseNo, m);
      // Memory before the loader runs (after generating the input); collect garbage when it piles up,
      // so that the peak reflects what single cases hold rather than uncollected garbage.
      let before = process.memoryUsage();
      if (gc && before.heapUsed - live > bound / 4) {
        collect();
        before = process.memoryUsage();
        live = before.heapUsed;
        if (live > maxLive) maxLive = live;
      }
      watchdog.begin(desc);
      const c0 = performance.now();
      let timer: NodeJS.Timeout | undefined;
      const hardLimit = new Promise<Outcome>((resolve) => {
        timer = setTimeout(() => resolve({ kind: 'failure', what: `did not settle within ${10 * timeBound} ms` }), 10 * timeBound);
      });
      let out = await Promise.race([execCase(ctx, target, m), hardLimit]);
      clearTimeout(timer);
      const ms = performance.now() - c0;
      watchdog.end();

      const st = perTarget[target];
      st.cases++;
      st.totalMs += ms;
      if (ms > st.maxMs) st.maxMs = ms;
      if (!slowest || ms > slowest.ms) slowest = { target, caseNo, ms, mutation: detach(m.ops.join(' | ').slice(0, 300)) };
      let hang = false;
      if (ms > timeBound) {
        hang = true;
        out = { kind: 'failure', what: `took ${ms.toFixed(0)} ms (bound ${timeBound} ms); outcome: ${out.kind === 'failure' ? out.what : out.kind}` };
      }
      if (out.kind === 'accepted') st.accepted++;
      else if (out.kind === 'rejected') {
        st.rejected++;
        bump(groups, out.group);
        if (out.wrapped) bump(wrapped, out.group);
      } else if (out.kind === 'json-rejected') {
        st.jsonRejected++;
        bump(jsonGroups, out.group);
      } else {
        if (hang) {
          st.hangs++;
          hangCount++;
        } else {
          st.failures++;
          failureCount++;
        }
        if (failures.length < 100) {
          const err = out.error;
          failures.push({
            kind: hang ? 'hang' : 'failure',
            target,
            seed,
            caseNo,
            seedFile: m.seed,
            mutation: detach(m.ops.join(' | ').slice(0, 600)),
            what: detach(out.what.slice(0, 600)),
            stack: err instanceof Error && err.stack ? detach(err.stack.slice(0, 4000).split('\n').slice(0, 6).join('\n')) : undefined,
            ms,
            replay: `npm run fuzz -- --replay ${seed}:${caseNo} --target ${target}`,
          });
        }
        log?.(`[fuzz] ${hang ? 'HANG' : 'FAILURE'} target=${target} case=${caseNo}: ${out.what.slice(0, 300)}\n[fuzz]   ops: ${m.ops.join(' | ').slice(0, 300)}`);
      }

      // Memory: growth during the loader call (heap + array buffers), peak heap and rss.
      const mem = process.memoryUsage();
      const growth = mem.heapUsed + mem.arrayBuffers - (before.heapUsed + before.arrayBuffers);
      if (growth > maxCaseGrowth) {
        maxCaseGrowth = growth;
        maxCaseGrowthAt = detach(`${target} case ${caseNo}: ${m.ops.join(' | ').slice(0, 200)}`);
      }
      if (mem.heapUsed > peakHeap) peakHeap = mem.heapUsed;
      if (mem.rss > peakRss) peakRss = mem.rss;

      if (log && (i + 1) % every === 0) {
        const el = (performance.now() - t0) / 1000;
        let acc = 0;
        let rej = 0;
        for (const s of Object.values(perTarget)) {
          acc += s.accepted;
          rej += s.rejected + s.jsonRejected;
        }
        log(
          `[fuzz] ${i + 1}/${opts.cases} cases, ${((i + 1) / el).toFixed(0)}/s, accepted ${acc}, rejected ${rej}, ` +
            `failures ${failureCount}, hangs ${hangCount}, heap ${mib(mem.heapUsed)}, rss ${mib(mem.rss)}, forced GCs ${forcedGcs}`,
        );
      }
    }
  };
  try {
    await loop();
  } finally {
    await watchdog.stop();
    removeTmp(ctx.tmp);
  }
  const elapsedMs = performance.now() - t0;
  collect();
  await new Promise((r) => setImmediate(r));
  collect();
  const end = process.memoryUsage();
  const fdEnd = openFds();
  const sorted = (m: Map<string, number>) => [...m].map(([key, count]) => ({ key, count })).sort((a, b) => b.count - a.count || (a.key < b.key ? -1 : 1));
  const totals = Object.values(perTarget).reduce(
    (a, s) => ({ accepted: a.accepted + s.accepted, rejected: a.rejected + s.rejected, json: a.json + s.jsonRejected }),
    { accepted: 0, rejected: 0, json: 0 },
  );
  const peakHeapGrowth = peakHeap - base.heapUsed;
  const retainedGrowth = end.heapUsed - base.heapUsed;
  const memOk = peakHeapGrowth < bound && maxCaseGrowth < bound && retainedGrowth < bound;
  const fdLeak = fdStart !== null && fdEnd !== null && fdEnd - fdStart > 16;
  return {
    seed,
    cases: ran,
    requestedCases: opts.cases,
    ...(stoppedEarly !== undefined ? { stoppedEarly } : {}),
    firstCase: first,
    targets,
    perTarget,
    accepted: totals.accepted,
    rejected: totals.rejected,
    jsonRejected: totals.json,
    failureCount: failureCount + (fdLeak ? 1 : 0),
    hangCount,
    failures: fdLeak
      ? [...failures, { kind: 'failure', target: targets[0], seed, caseNo: -1, seedFile: '', mutation: '', what: `file descriptors grew from ${fdStart} to ${fdEnd}`, ms: 0, replay: '' }]
      : failures,
    groups: sorted(groups),
    wrapped: sorted(wrapped),
    jsonGroups: sorted(jsonGroups),
    memory: {
      bound,
      baselineHeapUsed: base.heapUsed,
      peakHeapUsed: peakHeap,
      peakHeapGrowth,
      maxCaseGrowth,
      maxCaseGrowthAt,
      retainedGrowth,
      maxLiveGrowth: maxLive - base.heapUsed,
      baselineRss: base.rss,
      peakRss,
      gcAvailable: gc !== undefined,
      forcedGcs,
      ok: memOk,
    },
    fds: fdStart !== null && fdEnd !== null ? { start: fdStart, end: fdEnd } : null,
    slowest,
    timeBoundMs: timeBound,
    elapsedMs,
    casesPerSec: ran / (elapsedMs / 1000),
    ok: failureCount === 0 && hangCount === 0 && memOk && !fdLeak,
  } satisfies FuzzSummary;
}

export function formatSummary(s: FuzzSummary): string {
  const L: string[] = [];
  L.push(`fuzz summary: seed ${s.seed}, ${s.cases} cases (${s.firstCase}..${s.firstCase + s.cases - 1}), targets ${s.targets.join(', ')}`);
  if (s.stoppedEarly) L.push(`  stopped early after ${s.cases} of ${s.requestedCases} cases: ${s.stoppedEarly}`);
  L.push(`  elapsed ${(s.elapsedMs / 1000).toFixed(1)} s, ${s.casesPerSec.toFixed(1)} cases/s, time bound ${s.timeBoundMs} ms per case`);
  L.push('  per target:             cases   accepted   rejected  json-rej  failures  hangs   max ms   mean ms');
  for (const [t, st] of Object.entries(s.perTarget)) {
    L.push(
      `    ${t.padEnd(20)} ${String(st.cases).padStart(7)} ${String(st.accepted).padStart(10)} ${String(st.rejected).padStart(10)} ` +
        `${String(st.jsonRejected).padStart(9)} ${String(st.failures).padStart(9)} ${String(st.hangs).padStart(6)} ` +
        `${st.maxMs.toFixed(0).padStart(8)} ${(st.cases ? st.totalMs / st.cases : 0).toFixed(2).padStart(9)}`,
    );
  }
  L.push(`  accepted ${s.accepted}, rejected with a typed error ${s.rejected}, rejected by JSON.parse ${s.jsonRejected}, failures ${s.failureCount}, hangs ${s.hangCount}`);
  L.push(`  typed-error groups (top 15 of ${s.groups.length}):`);
  for (const g of s.groups.slice(0, 15)) L.push(`    ${String(g.count).padStart(7)}  ${g.key}`);
  if (s.jsonGroups.length) L.push(`  JSON.parse rejections: ${s.jsonGroups.map((g) => `${g.key} x${g.count}`).join(', ')}`);
  if (s.wrapped.length) {
    L.push(`  note: typed errors wrapping an unexpected exception (${s.wrapped.reduce((a, g) => a + g.count, 0)}):`);
    for (const g of s.wrapped.slice(0, 5)) L.push(`    ${String(g.count).padStart(7)}  ${g.key}`);
  }
  const m = s.memory;
  L.push(
    `  memory: heap baseline ${mib(m.baselineHeapUsed)}, peak ${mib(m.peakHeapUsed)} (growth ${mib(m.peakHeapGrowth)}), ` +
      `max growth in one case ${mib(m.maxCaseGrowth)}, ` +
      `live after forced GCs at most ${mib(m.maxLiveGrowth)} above baseline, retained at the end ${mib(m.retainedGrowth)}; bound ${mib(m.bound)} -> ${m.ok ? 'ok' : 'EXCEEDED'}`,
  );
  L.push(`          rss baseline ${mib(m.baselineRss)}, peak ${mib(m.peakRss)}; forced GCs ${m.forcedGcs}${m.gcAvailable ? '' : ' (gc unavailable)'}`);
  if (m.maxCaseGrowthAt) L.push(`          largest case growth at ${m.maxCaseGrowthAt}`);
  if (s.fds) L.push(`  open file descriptors: ${s.fds.start} -> ${s.fds.end}`);
  if (s.slowest) L.push(`  slowest case: ${s.slowest.target} #${s.slowest.caseNo} ${s.slowest.ms.toFixed(0)} ms: ${s.slowest.mutation.slice(0, 200)}`);
  if (s.failures.length) {
    L.push(`  FAILURES (${s.failureCount} failures, ${s.hangCount} hangs; first ${s.failures.length} shown):`);
    for (const f of s.failures) {
      L.push(`    [${f.kind}] ${f.target} seed ${f.seed} case ${f.caseNo} (${f.ms.toFixed(0)} ms) input ${f.seedFile}`);
      L.push(`      mutation: ${f.mutation}`);
      L.push(`      ${f.what}`);
      if (f.stack) L.push(f.stack.split('\n').map((l) => '        ' + l).join('\n'));
      if (f.replay) L.push(`      replay: ${f.replay}`);
    }
  }
  L.push(s.ok ? 'result: OK' : 'result: FAILED');
  return L.join('\n');
}

/** Rerun one case and describe it; optionally write the mutated input to `dump`. */
export async function replayCase(opts: {
  seed: number;
  caseNo: number;
  targets?: readonly Target[] | 'all';
  maxHeaderBytes?: number;
  dump?: string;
}): Promise<{ ok: boolean; report: string }> {
  const targets = parseTargets(opts.targets === 'all' ? undefined : opts.targets);
  const target = targets[opts.caseNo % targets.length];
  const ctx = await setup(opts.maxHeaderBytes ?? 1 << 20);
  try {
    const m = generateCase(ctx, target, opts.seed >>> 0, opts.caseNo);
    if (opts.dump) fs.writeFileSync(opts.dump, m.bytes);
    const t0 = performance.now();
    const out = await execCase(ctx, target, m);
    const ms = performance.now() - t0;
    const lines = [describeCase(target, opts.seed >>> 0, opts.caseNo, m), `took ${ms.toFixed(1)} ms`];
    if (out.kind === 'accepted') lines.push('outcome: accepted');
    else if (out.kind === 'rejected' || out.kind === 'json-rejected') lines.push(`outcome: ${out.kind}: ${out.group}`);
    else {
      lines.push(`outcome: FAILURE: ${out.what}`);
      if (out.error instanceof Error && out.error.stack) lines.push(out.error.stack);
    }
    if (opts.dump) lines.push(`input written to ${opts.dump}`);
    return { ok: out.kind !== 'failure', report: lines.join('\n') };
  } finally {
    removeTmp(ctx.tmp);
  }
}
