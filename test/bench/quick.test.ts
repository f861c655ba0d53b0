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

it('the decode bench runs a Llama decoder at a config\'s shapes in each storage and reports bytes per step against the roof', async () => {
  // The llava-tiny fixture's config keeps it small; the bench's own default is LLaVA-1.5-7B.
  const dir = mkdtempSync(join(tmpdir(), 'bench-'));
  try {
    const json = join(dir, 'decode.json');
    const script = fileURLToPath(new URL('../../bench/decode.bench.ts', import.meta.url));
    const config = fileURLToPath(new URL('../fixtures/llava-tiny/config.json', import.meta.url));
    const { text_config: text } = (await readJsonObject(config)) as { text_config: { vocab_size: number; hidden_size: number } };
    const r = spawnSync(process.execPath, ['--import', 'tsx', script, '--config', config, '--context', '8', '--steps', '3', '--json', json], {
      encoding: 'utf8',
      timeout: 300_000,
    });
    assert.equal(r.status, 0, r.stdout + r.stderr);
    const out = (await readJsonObject(json)) as { columns: Record<string, number | string>[] };
    const by = Object.fromEntries(out.columns.map((c) => [c.storage, c as Record<string, number>]));
    // The default columns, each decoding in its own storage (AWQ's repacked codes are q4).
    assert.deepEqual(out.columns.map((c) => [c.storage, c.decoderDType]), [['bf16', 'bf16x2'], ['q8', 'q8'], ['q4', 'q4'], ['awq', 'q4']]);
    for (const c of Object.values(by)) {
      assert.ok(c.wallMsPerStep > 0 && c.achievedGBps > 0 && c.bandwidthRoofGBps > 0, JSON.stringify(c));
      assert.equal(c.steps, 3);
    }
    // Every weight once per step, the 16-bit LM head among them, plus the KV cache rows; fewer bytes per
    // step, and fewer on the GPU, as the codes narrow.
    assert.ok(by.bf16.bytesPerStep > text.vocab_size * text.hidden_size * 2, `bf16 bytes per step ${by.bf16.bytesPerStep}`);
    assert.ok(by.bf16.bytesPerStep > by.q8.bytesPerStep && by.q8.bytesPerStep > by.q4.bytesPerStep, JSON.stringify(out.columns.map((c) => c.bytesPerStep)));
    assert.ok(by.awq.bytesPerStep < by.bf16.bytesPerStep && by.q4.weightGpuBytes < by.q8.weightGpuBytes && by.q8.weightGpuBytes < by.bf16.weightGpuBytes);
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
