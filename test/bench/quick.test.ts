// The kernel benchmark's --quick mode runs in CI so that it cannot rot: every kernel validates
// against its float64 reference before it is timed, and the JSON report is complete.
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readJsonObject } from '../../src/io/model-dir.ts';

it('bench --quick validates and times every kernel and writes JSON', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'bench-'));
  try {
    const json = join(dir, 'bench.json');
    const script = fileURLToPath(new URL('../../bench/kernels.bench.ts', import.meta.url));
    const r = spawnSync(process.execPath, ['--import', 'tsx', script, '--quick', '--json', json], { encoding: 'utf8', timeout: 300_000 });
    assert.equal(r.status, 0, r.stdout + r.stderr);
    const out = (await readJsonObject(json)) as { rows: { name: string; medianMs: number }[]; revision: string };
    assert.ok(out.rows.length >= 20, `${out.rows.length} rows`);
    for (const row of out.rows) {
      assert.ok(row.medianMs > 0 && Number.isFinite(row.medianMs), `${row.name}: median ${row.medianMs}`);
    }
    assert.match(out.revision, /^[0-9a-f]+$|^unknown$/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

it('the decode bench runs a Llama decoder at a config\'s shapes and reports bytes per step against the roof', async () => {
  // The llava-tiny fixture's config keeps it small; the bench's own default is LLaVA-1.5-7B.
  const dir = mkdtempSync(join(tmpdir(), 'bench-'));
  try {
    const json = join(dir, 'decode.json');
    const script = fileURLToPath(new URL('../../bench/decode.bench.ts', import.meta.url));
    const config = fileURLToPath(new URL('../fixtures/llava-tiny/config.json', import.meta.url));
    const r = spawnSync(process.execPath, ['--import', 'tsx', script, '--config', config, '--context', '8', '--steps', '3', '--json', json], {
      encoding: 'utf8',
      timeout: 300_000,
    });
    assert.equal(r.status, 0, r.stdout + r.stderr);
    const out = (await readJsonObject(json)) as Record<string, number>;
    // Every weight once per step (the LM head among them) plus the KV cache rows.
    assert.ok(out.bytesPerStep > out.vocab * out.hidden * 2, `bytes per step ${out.bytesPerStep}`);
    assert.ok(out.wallMsPerStep > 0 && out.achievedGBps > 0 && out.bandwidthRoofGBps > 0, JSON.stringify(out));
    assert.equal(out.steps, 3);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

it('npm run bench (bench/run.ts) merges the kernel table and says why the ORT column is missing with --no-peers', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'bench-'));
  try {
    const json = join(dir, 'bench.json');
    const script = fileURLToPath(new URL('../../bench/run.ts', import.meta.url));
    const r = spawnSync(process.execPath, ['--import', 'tsx', script, '--quick', '--no-peers', '--json', json], { encoding: 'utf8', timeout: 300_000 });
    assert.equal(r.status, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /no ORT column: --no-peers/);
    const out = (await readJsonObject(json)) as { peer: unknown; rows: unknown[]; roofline: { bandwidthGBps: number } };
    assert.deepEqual(out.peer, { unavailable: '--no-peers' });
    assert.ok(out.rows.length >= 20 && out.roofline.bandwidthGBps > 0);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
