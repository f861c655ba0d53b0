// The fuzzer's command line: `npm run fuzz -- --help`. Ctrl-C stops after the current case and prints
// the summary; a second one removes the temp directories and exits.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { formatSummary, parseTargets, replayCase, runFuzz } from './fuzz.ts';
import { liveTmpDirs } from './targets.ts';

const USAGE = `usage: npm run fuzz -- [--cases N] [--seed N] [--target all|safetensors|index|config|quant[,...]]
                     [--first-case N] [--time-bound MS] [--max-seconds S] [--progress-every N] [--json]
       (Ctrl-C stops after the current case and prints the summary; a second Ctrl-C exits at once)
       npm run fuzz -- --replay SEED:CASE [--target T] [--dump FILE]`;

const stop = new AbortController();

async function main(argv: string[]): Promise<number> {
  const args = new Map<string, string>();
  const flags = new Set<string>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--help' || a === '-h') {
      process.stdout.write(USAGE + '\n');
      return 0;
    }
    if (!a.startsWith('--')) throw new Error(`unexpected argument ${JSON.stringify(a)}\n${USAGE}`);
    const eq = a.indexOf('=');
    if (eq > 0) args.set(a.slice(2, eq), a.slice(eq + 1));
    else if (a === '--json') flags.add('json');
    else {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${a} needs a value\n${USAGE}`);
      args.set(a.slice(2), v);
    }
  }
  const int = (k: string, d: number): number => {
    const v = args.get(k);
    if (v === undefined) return d;
    const n = Number(v);
    if (!Number.isSafeInteger(n) || n < 0) throw new Error(`--${k} must be a non-negative integer, got ${JSON.stringify(v)}`);
    return n;
  };
  for (const k of args.keys()) {
    if (!['cases', 'seed', 'target', 'replay', 'dump', 'first-case', 'time-bound', 'progress-every', 'max-seconds'].includes(k)) throw new Error(`unknown option --${k}\n${USAGE}`);
  }
  const targets = parseTargets(args.get('target'));
  const replay = args.get('replay');
  if (replay !== undefined) {
    const m = /^(\d+):(\d+)$/.exec(replay);
    if (!m) throw new Error(`--replay expects SEED:CASE, got ${JSON.stringify(replay)}`);
    const r = await replayCase({ seed: Number(m[1]), caseNo: Number(m[2]), targets, dump: args.get('dump') });
    process.stdout.write(r.report + '\n');
    return r.ok ? 0 : 1;
  }
  const seed = args.has('seed') ? int('seed', 0) : (Date.now() ^ (process.pid << 16)) >>> 0;
  const cases = int('cases', 10000);
  process.stderr.write(`[fuzz] seed ${seed >>> 0}, ${cases} cases, targets ${targets.join(', ')}\n`);
  const s = await runFuzz({
    cases,
    seed,
    targets,
    firstCase: int('first-case', 0),
    timeBoundMs: int('time-bound', 2000),
    progress: true,
    progressEvery: int('progress-every', 2000),
    ...(args.has('max-seconds') ? { maxSeconds: int('max-seconds', 0) } : {}),
    signal: stop.signal,
  });
  process.stdout.write((flags.has('json') ? JSON.stringify(s, null, 2) : formatSummary(s)) + '\n');
  return s.ok ? 0 : 1;
}

const isMain = process.argv[1] !== undefined && pathToFileURL(path.resolve(process.argv[1])).href === import.meta.url;
if (isMain) {
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.on(sig, () => {
      if (!stop.signal.aborted) {
        process.stderr.write(`[fuzz] ${sig}: stopping after the current case (again to exit at once)\n`);
        stop.abort();
        return;
      }
      for (const d of liveTmpDirs) fs.rmSync(d, { recursive: true, force: true });
      process.stderr.write(`[fuzz] ${sig}: exiting\n`);
      process.exit(130);
    });
  }
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (e: unknown) => {
      process.stderr.write(`${e instanceof Error ? e.message : String(e)}\n`);
      process.exitCode = 2;
    },
  );
}
