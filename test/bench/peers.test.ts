// The peer benchmark's --quick mode (bench/peers/ort.bench.ts) runs here so that it cannot rot: our side
// validates on every row, onnxruntime's WebGPU EP validates on every row but attention, and the JSON
// report is complete. onnxruntime-node is not a dependency of this package (see bench/peers/ort.ts): the
// bench installs it on demand, and this test skips, saying why, where it cannot be installed or loaded
// or its WebGPU EP cannot start (the bench's exit status 3).
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readJsonObject } from '../../src/io/model-dir.ts';

const PEER_UNAVAILABLE = 3; // bench/peers/ort.ts (not imported, so this file loads nothing native)

it('bench:peers --quick validates both sides, times every row and writes JSON', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'peers-'));
  try {
    const json = join(dir, 'peers.json');
    const script = fileURLToPath(new URL('../../bench/peers/ort.bench.ts', import.meta.url));
    // The first run may download onnxruntime-node (113.5 MB) into the bench cache.
    const r = spawnSync(process.execPath, ['--import', 'tsx', script, '--quick', '--json', json], { encoding: 'utf8', timeout: 600_000 });
    if (r.status === PEER_UNAVAILABLE) {
      const why = /peer unavailable: (.*)/.exec(r.stderr)?.[1] ?? r.stderr.trim().split('\n').pop();
      t.skip(`onnxruntime-node is not available here: ${why}`);
      return;
    }
    assert.equal(r.status, 0, r.stdout + r.stderr);
    const out = (await readJsonObject(json)) as {
      peer: { executionProvider: string };
      revision: string;
      rows: { name: string; oursMs: number; oursKernelMs: number | null; ortMs: number; ortError?: string; ortValid: boolean; ratio: number | null }[];
    };
    assert.equal(out.peer.executionProvider, 'webgpu');
    assert.match(out.revision, /^[0-9a-f]+$|^unknown$/);
    assert.ok(out.rows.length >= 20, `${out.rows.length} rows`);
    for (const row of out.rows) {
      // Ours validated (the bench throws otherwise) and was timed.
      assert.ok(row.oursMs > 0 && Number.isFinite(row.oursMs), `${row.name}: ours ${row.oursMs}`);
      assert.ok(row.oursKernelMs === null || row.oursKernelMs > 0, `${row.name}: kernel ${row.oursKernelMs}`);
      // ORT ran every graph wholly on its WebGPU EP (CPU fallback is disabled) and was timed.
      assert.ok(row.ortMs > 0 && Number.isFinite(row.ortMs), `${row.name}: ORT ${row.ortMs} ${row.ortError ?? ''}`);
      if (row.ortValid) {
        assert.ok(row.ratio !== null && row.ratio > 0, `${row.name}: ratio ${row.ratio}`);
      } else {
        // onnxruntime 1.30's WebGPU flash attention (prefill, sequence ≥ 32) returns wrong values on
        // lavapipe; anything else failing validation is a bug in our ONNX graphs.
        assert.match(row.name, /attention/, `${row.name}: ORT output wrong: ${row.ortError}`);
        assert.equal(row.ratio, null);
        t.diagnostic(`ORT output wrong: ${row.name}: ${row.ortError}`);
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
