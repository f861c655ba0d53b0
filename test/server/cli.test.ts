// `webgpu-vlm serve` as a user starts it: the address, model and adapter printed at start, the API key
// required on /v1 routes (401 without it or with another), and SIGTERM during a streamed reply: the stream
// ends with an error event, the device is freed, and the process exits 0. Also --help and misuse.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { APIError } from 'openai';
import { DIR, MODEL, client, raw, rejectsWith } from './helpers.ts';

// The command from its sources, as test/api/cli.test.ts runs it.
const BIN = ['--import', 'tsx', fileURLToPath(new URL('../../src/cli.ts', import.meta.url))];
const KEY = 'sk-test-0123456789';

describe('webgpu-vlm serve', () => {
  it('prints where it listens, requires the API key, and stops on SIGTERM with exit 0', { timeout: 300_000 }, async () => {
    const child = spawn(process.execPath, [...BIN, 'serve', '--model', DIR, '--port', '0', '--api-key', KEY], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    const exited = once(child, 'close');
    try {
      while (!/^adapter: .+$/m.test(stdout)) {
        assert.equal(child.exitCode, null, `serve exited early: ${stderr}`);
        await new Promise((r) => setTimeout(r, 50));
      }
      const url = /listening on (http:\/\/127\.0\.0\.1:\d+\/v1)/.exec(stdout)?.[1];
      assert.ok(url, stdout);
      assert.match(stdout, new RegExp(`^model: ${MODEL} \\(`, 'm'));

      const r = await raw(`${url}/models`);
      assert.equal(r.status, 401);
      assert.equal(r.body.error.code, 'missing_api_key');
      await rejectsWith(client(url, 'sk-wrong').chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'Hi' }] }), 401, { code: 'invalid_api_key' });
      assert.equal((await raw(url.replace(/\/v1$/, '/health'))).status, 200, 'health needs no key (load balancers probe it)');
      const api = client(url, KEY);
      assert.equal((await api.models.list()).data[0].id, MODEL);

      // SIGTERM while a long reply streams: the client gets an error event, the server stops.
      const stream = await api.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'Hi' }], max_tokens: 8000, temperature: 0, stream: true });
      let chunks = 0;
      await assert.rejects(
        (async () => {
          for await (const _ of stream) if (++chunks === 2) child.kill('SIGTERM');
        })(),
        (e) => e instanceof APIError && /shutting down/.test(e.message),
      );
      const [code] = await exited;
      assert.equal(code, 0, stderr);
      assert.match(stderr, /SIGTERM: stopping/);
      assert.match(stderr, /stopped\n$/);
      // The access log has the requests: 401s, 200s, and the stream answered by the shutdown.
      assert.match(stderr, /GET \/v1\/models 401/);
      assert.match(stderr, /POST \/v1\/chat\/completions 503, stream, \d+ \+ \d+ tokens \(abort\)/);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  });

  it('has --help, and exits 2 with the usage on a bad option', () => {
    const help = spawnSync(process.execPath, [...BIN, 'serve', '--help'], { encoding: 'utf8' });
    assert.equal(help.status, 0);
    assert.match(help.stdout, /webgpu-vlm serve --model/);
    for (const args of [['--model', DIR, '--port', '70000'], ['--model', DIR, '--max-queue', 'many'], ['--port', '8080'], ['--model', DIR, '--kernels', 'tpu']]) {
      const r = spawnSync(process.execPath, [...BIN, 'serve', ...args], { encoding: 'utf8' });
      assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, /webgpu-vlm: serve: /);
    }
  });
});
