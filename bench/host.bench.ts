// Host overhead of one decode step of the SmolVLM-256M-shaped decoder (30 layers), on Dawn's null
// backend: no GPU work happens, so the time is our code (uniforms, encoding) plus Dawn's validation
// and submission. Reports µs per decode step, µs per dispatch and dispatches per step.
// The checkpoint is a sparse file with the real header (bench/make-checkpoint.ts's tensor list): the
// weights are zeros, which the null backend never reads anyway.
//
//   npm run bench:host [-- --steps N] [--json FILE]
import { parseArgs } from 'node:util';
import { mkdtempSync, rmSync, copyFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Gpu } from '../src/gpu/device.ts';
import { SmolVLM } from '../src/models/smolvlm.ts';
import { parseIdefics3Config } from '../src/models/config.ts';
import { HF_DIR, idefics3Tensors, writeSparseCheckpoint } from './make-checkpoint.ts';
import { readJsonObject } from '../src/io/model-dir.ts';

const { values: args } = parseArgs({ options: { steps: { type: 'string' }, json: { type: 'string' } } });
const steps = Number(args.steps ?? 500);
const VOCAB = 8192;

const dir = mkdtempSync(join(tmpdir(), 'host-bench-'));
try {
  for (const f of readdirSync(HF_DIR)) copyFileSync(join(HF_DIR, f), join(dir, f));
  // The null backend caps its memory near 512 MiB, below the 256M model's weights, so the vocabulary is
  // cut to 8,192 rows: every layer, shape of the step and dispatch is as in the real model; only the
  // embedding and LM-head tables are smaller, and their host cost does not depend on their size.
  const json = (await readJsonObject(join(HF_DIR, 'config.json'))) as { vocab_size: number; text_config: { vocab_size: number } };
  json.vocab_size = json.text_config.vocab_size = VOCAB;
  writeFileSync(join(dir, 'config.json'), JSON.stringify(json));
  const cfg = parseIdefics3Config(json, 'config.json');
  await writeSparseCheckpoint(join(dir, 'model.safetensors'), idefics3Tensors(cfg), 'BF16');

  // Twice: with Dawn's validation (the default) and with its skip_validation toggle (GpuOptions.skipValidation).
  const results = [];
  for (const skipValidation of [false, true]) {
    const gpu = await Gpu.create({ dawnFlags: ['backend=null'], skipValidation });
    try {
      if (!skipValidation) console.log(`adapter: ${gpu.info.device || gpu.info.description} (Dawn null backend: validation and submission only); vocabulary cut to ${VOCAB}`);
      // f16 storage halves the weights again (host work does not depend on their dtype).
      const model = await SmolVLM.load(gpu, dir, { dtype: 'f16' });
      const prompt = 32;
      model.ensureCapacity(prompt + steps + 1);
      // Compile the one-token plan once (as the first decode step does), then time steps.
      const { plan } = await model.forward([1], null, { pos: prompt });
      const ids = new Uint32Array(1);
      const run = (pos: number) => {
        ids[0] = (pos * 7) % cfg.text_config.vocab_size;
        plan.exe.write(plan.ids, ids);
        plan.exe.run({ pos });
      };
      for (let i = 0; i < 20; i++) run(prompt + i); // warm-up
      const times: number[] = [];
      for (let i = 0; i < steps; i++) {
        const t0 = performance.now();
        run(prompt + i);
        times.push(performance.now() - t0);
      }
      await gpu.device.queue.onSubmittedWorkDone();
      times.sort((a, b) => a - b);
      const median = times[Math.floor(times.length / 2)] * 1000;
      const p90 = times[Math.floor(times.length * 0.9)] * 1000;
      const dispatches = plan.exe.dispatchCount;
      const out = {
        validation: !skipValidation,
        layers: cfg.text_config.num_hidden_layers,
        steps,
        dispatchesPerStep: dispatches,
        usPerStepMedian: median,
        usPerStepP90: p90,
        usPerDispatch: median / dispatches,
        pipelines: gpu.pipelines.size,
      };
      results.push(out);
      console.log(
        `decode step (${out.layers} layers${skipValidation ? ', skip_validation' : ''}): ${median.toFixed(0)} µs median, ${p90.toFixed(0)} µs p90 over ${steps} steps; ` +
          `${dispatches} dispatches per step, ${out.usPerDispatch.toFixed(2)} µs per dispatch; one submission per step`,
      );
      model.dispose();
    } finally {
      gpu.destroy();
    }
  }
  if (args.json) writeFileSync(args.json, JSON.stringify({ date: new Date().toISOString(), results }, null, 2));
} finally {
  rmSync(dir, { recursive: true, force: true });
}
