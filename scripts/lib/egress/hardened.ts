// What para's own helper containers share (the proxy, the forwarder, the credential broker):
// read-only, unprivileged, no capabilities, small, capped logs.
import type { RunSpec } from '../engine/spec.ts';

export function hardened(user: string): Pick<RunSpec, 'readOnly' | 'user' | 'capabilities' | 'noNewPrivileges' | 'init' | 'memory' | 'pidsLimit' | 'logs'> {
  return {
    readOnly: true,
    user,
    capabilities: { drop: 'ALL', add: [] },
    noNewPrivileges: true,
    init: true,
    memory: '256m',
    pidsLimit: 256,
    // The agent can make them log as fast as it sends requests: the log is capped.
    logs: { maxSize: '10m', maxFiles: 2 },
  };
}
