// The one thing para asks the Docker API for directly: a container's recent log lines, on an
// engine reached through a unix socket on this machine. The docker CLI costs a process start
// (about 0.04 s of CPU here) per call; list and watch read two logs per session, so with many
// sessions the CLI would be most of their time. Everything else goes through the CLI, and so
// does this on any other engine (an ssh or tcp context, a remote DOCKER_HOST).
import http from 'node:http';
import type { EngineTarget } from './target.ts';

const DEFAULT_SOCKET = '/var/run/docker.sock';

/** The unix socket of an engine on this machine, when the target names one; else undefined (use the CLI). */
export function localSocket(target: EngineTarget | null, env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (target?.context) return undefined;
  if (!target && env.DOCKER_CONTEXT) return undefined;
  const host = target ? target.host : env.DOCKER_HOST || null;
  if (!host) return DEFAULT_SOCKET;
  return host.startsWith('unix://') ? host.slice('unix://'.length) : undefined;
}

export interface LogQuery {
  /** The last N lines. */
  tail?: number;
  /** Only lines since this time (an ISO time). */
  since?: string;
}

/** docker's multiplexed stream (a container without a terminal): 8-byte frame headers before each chunk. */
export function demultiplex(body: Buffer): string {
  const looksFramed = body.length >= 8 && body[0] <= 2 && body[1] === 0 && body[2] === 0 && body[3] === 0;
  if (!looksFramed) return body.toString('utf8');
  const parts: Buffer[] = [];
  let at = 0;
  while (at + 8 <= body.length) {
    const size = body.readUInt32BE(at + 4);
    parts.push(body.subarray(at + 8, Math.min(body.length, at + 8 + size)));
    at += 8 + size;
  }
  return Buffer.concat(parts).toString('utf8');
}

/** At most this much of a log is read (a log is the agent's output too: it can be huge). */
const MAX_LOG_BYTES = 8 * 1024 * 1024;

/**
 * A container's standard output log through the engine's socket; undefined when the
 * socket cannot be used (the caller asks the CLI); throws when the engine answers with an error.
 */
export function socketLogs(socketPath: string, container: string, query: LogQuery, timeoutMs = 5000): Promise<string | undefined> {
  const params = new URLSearchParams({ stdout: '1', stderr: '0' });
  if (query.tail !== undefined) params.set('tail', String(query.tail));
  if (query.since) params.set('since', String(Math.floor(Date.parse(query.since) / 1000)));
  return new Promise((resolve, reject) => {
    const request = http.get({ socketPath, path: `/containers/${encodeURIComponent(container)}/logs?${params}`, timeout: timeoutMs }, (response) => {
      const chunks: Buffer[] = [];
      let size = 0;
      response.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size <= MAX_LOG_BYTES) chunks.push(chunk);
        else response.destroy();
      });
      response.on('error', () => resolve(undefined));
      response.on('end', () => {
        const body = Buffer.concat(chunks);
        if (response.statusCode === 200) resolve(demultiplex(body));
        else reject(new Error(`the engine answered ${response.statusCode}: ${body.toString('utf8').trim().slice(0, 300)}`));
      });
      response.on('close', () => {
        if (!response.complete) resolve(size > MAX_LOG_BYTES ? demultiplex(Buffer.concat(chunks)) : undefined);
      });
    });
    request.on('timeout', () => request.destroy());
    request.on('error', () => resolve(undefined));
  });
}
