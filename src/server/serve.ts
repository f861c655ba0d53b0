// The `serve` command once its options are parsed (src/cli.ts): start the server, say where it listens, log
// each request, and stop on SIGINT or SIGTERM: no new connections, generations aborted, the device destroyed.
import { progressBar } from '../progress.ts';
import { ChatServer, type RequestLog, type ServeOptions } from './server.ts';

function accessLine(r: RequestLog): string {
  const parts = [`${r.method} ${r.path} ${r.status}`];
  if (r.promptTokens !== undefined) {
    parts.push(`${r.stream ? 'stream, ' : ''}${r.promptTokens}${r.cachedTokens ? ` (${r.cachedTokens} cached)` : ''} + ${r.completionTokens} tokens (${r.finishReason})`);
    parts.push(`queue ${r.queueMs!.toFixed(0)} ms`);
    if (r.ttftMs !== undefined) parts.push(`TTFT ${r.ttftMs.toFixed(0)} ms`);
  }
  parts.push(`${r.totalMs.toFixed(0)} ms`);
  if (r.error && r.status !== 499) parts.push(r.error);
  return parts.join(', ');
}

/** Runs the server until SIGINT or SIGTERM; resolves with the exit code once it has stopped (0). */
export async function serve(opts: ServeOptions): Promise<number> {
  const log = (s: string) => process.stderr.write(`${s}\n`);
  const server = await ChatServer.start({
    ...opts,
    load: { ...opts.load, onProgress: opts.load?.onProgress ?? progressBar('loading') },
    onRequest: (r) => log(accessLine(r)),
  });
  const pipe = server.pipe!;
  const gpu = pipe.model.gpu;
  console.log(`webgpu-vlm serve: listening on ${server.url} (OpenAI-compatible: POST /v1/chat/completions, GET /v1/models, /health, /metrics)`);
  console.log(`model: ${server.modelId} (${pipe.dir}), loaded in ${(pipe.loadMs / 1000).toFixed(2)} s`);
  console.log(`${gpu.describe().split('\n')[0]}; kernels for a ${pipe.model.tuning.target === 'cpu' ? 'SIMD-on-CPU driver' : 'GPU'}`);
  if (opts.apiKey) console.log('API key required (Authorization: Bearer ...)');

  return new Promise((done) => {
    const stop = (signal: NodeJS.Signals) => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      // A second signal while stopping quits at once (128 + the signal's number, as a shell reports it).
      process.once('SIGINT', () => process.exit(130));
      process.once('SIGTERM', () => process.exit(143));
      log(`webgpu-vlm serve: ${signal}: stopping (requests in flight are aborted)`);
      void server.close().then(() => {
        log('webgpu-vlm serve: stopped');
        done(0);
      });
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
}
