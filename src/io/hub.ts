// Resolves a Hugging Face Hub id (ORG/NAME) to a snapshot folder of the local Hugging Face cache, offline:
// $HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub; then models--ORG--NAME/snapshots/REV
// with REV from refs/<revision> (default main), or the only snapshot there is.
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';

export class HubError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'HubError';
  }
}

export function hubCacheDirs(env: NodeJS.ProcessEnv = process.env): string[] {
  const dirs: string[] = [];
  if (env.HF_HUB_CACHE) dirs.push(env.HF_HUB_CACHE);
  if (env.HF_HOME) dirs.push(join(env.HF_HOME, 'hub'));
  dirs.push(join(env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'huggingface', 'hub'));
  return [...new Set(dirs)];
}

/** True for strings shaped like a Hub model id ("org/name", no path syntax). */
export function looksLikeHubId(s: string): boolean {
  return /^[A-Za-z0-9][\w.-]*\/[\w.-]+$/.test(s) && !s.startsWith('.') && !existsSync(s);
}

export interface Snapshot {
  /** The snapshot folder (config.json, weights, tokenizer). */
  dir: string;
  /** The repository folder, models--ORG--NAME, inside which the snapshot's links resolve. */
  repo: string;
  revision: string;
}

export function resolveHubId(id: string, revision = 'main', env: NodeJS.ProcessEnv = process.env): Snapshot {
  const [org, name] = id.split('/');
  const folder = `models--${org}--${name}`;
  const looked: string[] = [];
  for (const cache of hubCacheDirs(env)) {
    const repo = join(cache, folder);
    looked.push(repo);
    if (!existsSync(repo)) continue;
    const snapshots = join(repo, 'snapshots');
    let rev = revision;
    const ref = join(repo, 'refs', revision);
    if (existsSync(ref)) rev = readFileSync(ref, 'utf8').trim();
    if (existsSync(join(snapshots, rev))) return { dir: join(snapshots, rev), repo, revision: rev };
    const all = existsSync(snapshots) ? readdirSync(snapshots).filter((d) => statSync(join(snapshots, d)).isDirectory()) : [];
    if (all.length === 1 && revision === 'main') return { dir: join(snapshots, all[0]), repo, revision: all[0] };
    throw new HubError(
      `${id}: found ${repo} but no snapshot for revision "${revision}" (snapshots: ${all.join(', ') || 'none'}); ` +
        'download it with `hf download ' + id + '`',
    );
  }
  throw new HubError(
    `${id} is not in the local Hugging Face cache (offline; nothing is downloaded). Looked in:\n` +
      looked.map((l) => `  ${l}`).join('\n') +
      `\nDownload it with \`hf download ${id}\`, set HF_HUB_CACHE or HF_HOME, or pass a model directory.`,
  );
}
