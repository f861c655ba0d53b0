// The loader fuzzer (test/fuzz/fuzz.ts) on a fixed seed: 4,000 mutated safetensors files, sharded
// indexes, config.json files and quantized checkpoints (packed AWQ/GPTQ headers and quantization_config)
// must each end in a result or in the loader's typed error, within the
// per-case time bound and with bounded heap growth. `npm run fuzz -- --cases N` runs longer campaigns.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatSummary, replayCase, runFuzz } from './fuzz.ts';
import { ALL_TARGETS } from './targets.ts';

const SEED = 20251126;

test('fuzz: 4,000 mutated loader inputs end in a result or a typed error', { timeout: 320_000 }, async () => {
  const s = await runFuzz({ cases: 4000, seed: SEED, targets: 'all' });
  const report = formatSummary(s);
  assert.equal(s.failureCount, 0, report);
  assert.equal(s.hangCount, 0, report);
  for (const t of ALL_TARGETS) {
    const st = s.perTarget[t];
    assert.equal(st.cases, 1000, `${t}\n${report}`);
    // Neither all trivial nor all fatal.
    assert.ok(st.accepted >= 5, `${t}: only ${st.accepted} accepted\n${report}`);
    assert.ok(st.rejected + st.jsonRejected >= 500, `${t}: only ${st.rejected + st.jsonRejected} rejected\n${report}`);
    assert.ok(st.rejected >= 100, `${t}: only ${st.rejected} typed errors\n${report}`);
  }
  assert.ok(s.groups.length >= 30, `only ${s.groups.length} distinct typed-error groups\n${report}`);
  const m = s.memory;
  assert.ok(m.peakHeapGrowth < m.bound, report);
  assert.ok(m.maxCaseGrowth < m.bound, report);
  assert.ok(m.retainedGrowth < m.bound, report);
  if (s.fds) assert.ok(s.fds.end - s.fds.start <= 16, report);
  assert.ok(s.ok, report);
});

test('fuzz: cases are reproducible from (seed, case number)', { timeout: 120_000 }, async () => {
  const a = await runFuzz({ cases: 30, seed: 7, targets: ['safetensors', 'config'] });
  const b = await runFuzz({ cases: 30, seed: 7, targets: ['safetensors', 'config'] });
  assert.deepEqual(a.groups, b.groups);
  assert.deepEqual(
    Object.values(a.perTarget).map((t) => [t.accepted, t.rejected, t.jsonRejected]),
    Object.values(b.perTarget).map((t) => [t.accepted, t.rejected, t.jsonRejected]),
  );
  // Replaying one case alone gives the same input as in the run (case 3 of ['safetensors','config'] is config).
  const r1 = await replayCase({ seed: 7, caseNo: 3, targets: ['safetensors', 'config'] });
  const r2 = await replayCase({ seed: 7, caseNo: 3, targets: ['config'] });
  const firstLine = (r: { report: string }) => r.report.split('\n')[0];
  assert.equal(firstLine(r1), firstLine(r2));
  assert.ok(r1.ok && r2.ok, r1.report);
});
