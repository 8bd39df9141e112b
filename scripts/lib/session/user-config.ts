// The user's own Claude setup, carried into a session: CLAUDE.md, commands, agents, skills and
// output styles, and the keys of settings.json that hold no secret, run nothing and name no host
// path. Never credentials, history, ~/.claude.json's projects, hooks, MCP servers, environment
// values or helpers that run host commands. The files are read without following a link and go in
// owned by root, so the agent reads them and cannot change them in place.
import fs from 'fs-extra';
import path from 'node:path';
import type { Engine } from '../engine/engine.ts';
import { config } from '../config.ts';
import { UsageError } from '../errors.ts';
import { claudeJsonPath, configDir } from '../image/credentials.ts';
import { tarArchive, type TarEntry } from '../tar.ts';

/** The folders carried whole (plain files and folders only). */
export const CARRIED_FOLDERS = ['commands', 'agents', 'skills', 'output-styles'];
/** settings.json keys that are plain preferences. Everything else (hooks, env, apiKeyHelper, statusLine, mcp...) stays home. */
export const CARRIED_SETTINGS = [
  'model',
  'outputStyle',
  'permissions',
  'alwaysThinkingEnabled',
  'includeCoAuthoredBy',
  'cleanupPeriodDays',
  'spinnerTipsEnabled',
];

const MAX_FILES = 2000;
const MAX_FILE_BYTES = 1024 * 1024;
const MAX_TOTAL_BYTES = 16 * 1024 * 1024;

export interface UserConfig {
  entries: TarEntry[];
  settings: Record<string, unknown>;
  /** MCP servers chosen one by one (--mcp-server NAME), from ~/.claude.json's mcpServers. */
  mcpServers: Record<string, unknown>;
  /** What was left out, and why (links, sizes, names too long). */
  skipped: string[];
}

/** Permission rules that name a host path (an absolute or ~ path in a rule) are left out: the path means nothing inside. */
function carriedPermissions(value: unknown): unknown {
  if (!value || typeof value !== 'object' || Array.isArray(value)) return undefined;
  const out: Record<string, unknown> = {};
  for (const [key, rules] of Object.entries(value as Record<string, unknown>)) {
    if (key === 'additionalDirectories') continue;
    if (Array.isArray(rules)) out[key] = rules.filter((r) => typeof r === 'string' && !/(^|[(\s:])(\/|~)/.test(r));
    else if (key === 'defaultMode' && typeof rules === 'string') out[key] = rules;
  }
  return out;
}

export async function readUserConfig(home: string, env: NodeJS.ProcessEnv): Promise<UserConfig> {
  const dir = configDir(home, env);
  const entries: TarEntry[] = [];
  const skipped: string[] = [];
  let total = 0;
  const addFile = async (relative: string) => {
    const file = path.join(dir, relative);
    const stat = await fs.lstat(file).catch(() => undefined);
    if (!stat) return;
    if (!stat.isFile()) {
      skipped.push(`${relative} (not a plain file)`);
      return;
    }
    const name = `.claude/${relative}`;
    if (Buffer.byteLength(name) > 100 || stat.size > MAX_FILE_BYTES || total + stat.size > MAX_TOTAL_BYTES || entries.length >= MAX_FILES) {
      skipped.push(`${relative} (too long or too large)`);
      return;
    }
    total += stat.size;
    entries.push({ path: name, mode: 0o644, content: await fs.readFile(file) });
  };
  const walk = async (relative: string): Promise<void> => {
    const stat = await fs.lstat(path.join(dir, relative)).catch(() => undefined);
    if (!stat) return;
    if (!stat.isDirectory()) {
      skipped.push(`${relative} (not a plain folder)`);
      return;
    }
    entries.push({ path: `.claude/${relative}/`, mode: 0o755 });
    for (const item of (await fs.readdir(path.join(dir, relative), { withFileTypes: true })).sort((a, b) => a.name.localeCompare(b.name))) {
      const child = `${relative}/${item.name}`;
      if (item.isDirectory()) await walk(child);
      else await addFile(child);
    }
  };
  await addFile('CLAUDE.md');
  for (const folder of CARRIED_FOLDERS) await walk(folder);
  let settings: Record<string, unknown> = {};
  const text = await fs.readFile(path.join(dir, 'settings.json'), 'utf8').catch(() => '');
  if (text) {
    try {
      const parsed = JSON.parse(text) as Record<string, unknown>;
      for (const key of CARRIED_SETTINGS) {
        if (!(key in parsed)) continue;
        const value = key === 'permissions' ? carriedPermissions(parsed[key]) : parsed[key];
        if (value !== undefined && (typeof value !== 'string' || value.length < 200)) settings[key] = value;
      }
    } catch {
      skipped.push('settings.json (not valid JSON)');
      settings = {};
    }
  }
  return { entries, settings, mcpServers: {}, skipped };
}

/**
 * The MCP servers the user names, from ~/.claude.json's own (user-scope) servers. One that carries
 * environment values or headers is refused: those are where servers keep their tokens, and the
 * agent could read them.
 */
export async function chosenMcpServers(home: string, env: NodeJS.ProcessEnv, names: string[]): Promise<Record<string, unknown>> {
  if (names.length === 0) return {};
  const file = claudeJsonPath(home, env);
  let servers: Record<string, unknown> = {};
  try {
    const data = JSON.parse(await fs.readFile(file, 'utf8')) as { mcpServers?: Record<string, unknown> };
    servers = data.mcpServers && typeof data.mcpServers === 'object' ? data.mcpServers : {};
  } catch {
    servers = {};
  }
  const out: Record<string, unknown> = {};
  for (const name of names) {
    const server = servers[name] as { env?: Record<string, unknown>; headers?: Record<string, unknown> } | undefined;
    if (!server || typeof server !== 'object')
      throw new UsageError(
        `there is no MCP server ${JSON.stringify(name)} in ${file}`,
        `choose one of: ${Object.keys(servers).join(', ') || '(none: add one with claude mcp add --scope user)'}`,
      );
    if (Object.keys(server.env ?? {}).length || Object.keys(server.headers ?? {}).length)
      throw new UsageError(
        `the MCP server ${name} carries environment values or headers, which the session's agent could read`,
        'give the server its credentials inside the session instead, or leave it out',
      );
    out[name] = server;
  }
  return out;
}

/** Copies the files into the container's home, root-owned (read-only to the agent). */
export async function copyUserConfig(engine: Engine, container: string, user: UserConfig): Promise<void> {
  if (user.entries.length === 0) return;
  await engine.copyIn(container, `${config.containerHome}/`, tarArchive(user.entries, { uid: 0, gid: 0 }));
}
