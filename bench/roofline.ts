// Roofline plot of the kernel benchmark: achieved GFLOP/s against arithmetic intensity (FLOP per byte,
// napkin math), log-log, under the device's measured roofs (copy bandwidth, best matmul). SVG, and PNG
// through sharp. Also the bandwidth roof itself (copyBandwidth), shared with the decode bench.
import sharp from 'sharp';
import type { Gpu } from '../src/gpu/device.ts';
import type { GpuTimer } from '../src/gpu/timing.ts';
import { Graph } from '../src/graph/graph.ts';
import { Executable } from '../src/graph/execute.ts';
import { sliceRows } from '../src/ops/elementwise.ts';

export interface RoofPoint {
  name: string;
  intensity: number;
  gflops: number;
}

const W = 960;
const H = 600;
const M = { left: 70, right: 330, top: 40, bottom: 60 };

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

export function rooflineSvg(points: RoofPoint[], bandwidthGBps: number, computeGFLOPs: number, title: string): string {
  const pts = points.filter((p) => p.intensity > 0 && p.gflops > 0 && Number.isFinite(p.gflops));
  const xs = [...pts.map((p) => p.intensity), computeGFLOPs / bandwidthGBps];
  const ys = [...pts.map((p) => p.gflops), computeGFLOPs];
  const [x0, x1] = [Math.floor(Math.log10(Math.min(...xs) / 2)), Math.ceil(Math.log10(Math.max(...xs) * 2))];
  const [y0, y1] = [Math.floor(Math.log10(Math.min(...ys) / 2)), Math.ceil(Math.log10(Math.max(...ys) * 2))];
  const px = (x: number) => M.left + ((Math.log10(x) - x0) / (x1 - x0)) * (W - M.left - M.right);
  const py = (y: number) => H - M.bottom - ((Math.log10(y) - y0) / (y1 - y0)) * (H - M.top - M.bottom);
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${M.left}" y="22" font-size="15">${esc(title)}</text>`,
  ];
  for (let e = x0; e <= x1; e++) {
    out.push(`<line x1="${px(10 ** e)}" y1="${M.top}" x2="${px(10 ** e)}" y2="${H - M.bottom}" stroke="#ddd"/>`);
    out.push(`<text x="${px(10 ** e)}" y="${H - M.bottom + 16}" text-anchor="middle">1e${e}</text>`);
  }
  for (let e = y0; e <= y1; e++) {
    out.push(`<line x1="${M.left}" y1="${py(10 ** e)}" x2="${W - M.right}" y2="${py(10 ** e)}" stroke="#ddd"/>`);
    out.push(`<text x="${M.left - 6}" y="${py(10 ** e) + 4}" text-anchor="end">1e${e}</text>`);
  }
  out.push(`<text x="${(M.left + W - M.right) / 2}" y="${H - 18}" text-anchor="middle">arithmetic intensity (FLOP/byte)</text>`);
  out.push(`<text transform="translate(18 ${(M.top + H - M.bottom) / 2}) rotate(-90)" text-anchor="middle">GFLOP/s</text>`);
  // The roofs: bandwidth slope up to the ridge, then the compute ceiling.
  const ridge = computeGFLOPs / bandwidthGBps;
  const xa = 10 ** x0;
  const xb = 10 ** x1;
  out.push(
    `<polyline fill="none" stroke="#c33" stroke-width="2" points="${px(xa)},${py(Math.max(bandwidthGBps * xa, 10 ** y0))} ${px(ridge)},${py(computeGFLOPs)} ${px(xb)},${py(computeGFLOPs)}"/>`,
  );
  out.push(`<text x="${px(xb) - 4}" y="${py(computeGFLOPs) - 6}" text-anchor="end" fill="#c33">best matmul ${computeGFLOPs.toFixed(1)} GFLOP/s</text>`);
  out.push(`<text x="${px(ridge) - 8}" y="${py(computeGFLOPs) + 16}" text-anchor="end" fill="#c33">copy ${bandwidthGBps.toFixed(1)} GB/s</text>`);
  pts.forEach((p, i) => {
    const hue = (i * 137) % 360;
    out.push(`<circle cx="${px(p.intensity)}" cy="${py(p.gflops)}" r="5" fill="hsl(${hue},70%,45%)"/>`);
    out.push(`<text x="${px(p.intensity) + 7}" y="${py(p.gflops) + 4}" font-size="10">${i + 1}</text>`);
    out.push(`<circle cx="${W - M.right + 18}" cy="${M.top + 8 + i * 17}" r="5" fill="hsl(${hue},70%,45%)"/>`);
    out.push(`<text x="${W - M.right + 28}" y="${M.top + 12 + i * 17}" font-size="10">${i + 1}. ${esc(p.name.slice(0, 52))}</text>`);
  });
  out.push('</svg>');
  return out.join('\n');
}

/** Writes FILE.svg and FILE.png. */
export async function writeRoofline(base: string, svg: string): Promise<string[]> {
  const { writeFileSync } = await import('node:fs');
  writeFileSync(`${base}.svg`, svg);
  await sharp(Buffer.from(svg)).png().toFile(`${base}.png`);
  return [`${base}.svg`, `${base}.png`];
}

/**
 * Device bandwidth: the better of a large copyBufferToBuffer timed by the wall clock (submission
 * included, so it underestimates a fast GPU) and a 64 MiB copy through our copy kernel timed by GPU
 * timestamps.
 */
export async function copyBandwidth(gpu: Gpu, timer: GpuTimer | null): Promise<number> {
  let kernel = 0;
  if (timer) {
    const g = new Graph(gpu.tuning);
    const rows = Math.floor(Math.min(64 * 2 ** 20, gpu.maxBinding) / 4096);
    const x = g.input('x', [rows, 1024], 'f32');
    const y = sliceRows(g, x, 0, rows);
    const exe = await Executable.compile(gpu, g, [y]);
    const ns: number[] = [];
    for (let i = 0; i < 7; i++) ns.push(await timer.time((w) => exe.run({ pos: 0 }, w)));
    exe.dispose();
    ns.sort((a, b) => a - b);
    kernel = (2 * rows * 4096) / (ns[1] / 1e9) / 1e9;
  }
  const bytes = Math.min(256 * 2 ** 20, gpu.limits.maxBufferSize / 2);
  const a = gpu.pool.create(bytes, undefined, 'copy src');
  const b = gpu.pool.create(bytes, undefined, 'copy dst');
  const times: number[] = [];
  for (let i = 0; i < 7; i++) {
    const t0 = performance.now();
    const enc = gpu.device.createCommandEncoder();
    enc.copyBufferToBuffer(a, 0, b, 0, bytes);
    gpu.device.queue.submit([enc.finish()]);
    await gpu.device.queue.onSubmittedWorkDone();
    times.push(performance.now() - t0);
  }
  gpu.pool.destroy(a);
  gpu.pool.destroy(b);
  times.sort((x, y) => x - y);
  return Math.max(kernel, (2 * bytes) / (times[1] / 1000) / 1e9); // read + write, second-best of 7
}
