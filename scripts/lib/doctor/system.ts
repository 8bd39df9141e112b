// Host checks: platform, docker CLI, docker daemon, git.
import os from 'node:os';
import { DockerError } from '../engine/docker.ts';
import { git, GitError } from '../git.ts';
import { deadlines, type DoctorContext } from './context.ts';
import { fail, ok, skip, warn, type Check, type Finding } from './runner.ts';

export function platformFinding(platform: NodeJS.Platform, arch: string = os.arch()): Finding {
  if (platform === 'linux' || platform === 'darwin') return ok(`${platform === 'darwin' ? 'macOS' : 'Linux'} (${arch})`);
  if (platform === 'win32') {
    return fail('Windows is not supported yet: para runs on Linux and macOS', 'use a Linux or macOS machine, or a Linux VM (WSL 2 is untested)');
  }
  return warn(`${platform} is untested: para is made for Linux and macOS`, 'use Linux or macOS if something fails');
}

function dockerEndpoint(env: NodeJS.ProcessEnv): string {
  if (env.DOCKER_HOST) return ` via DOCKER_HOST=${env.DOCKER_HOST}`;
  if (env.DOCKER_CONTEXT) return ` via DOCKER_CONTEXT=${env.DOCKER_CONTEXT}`;
  return '';
}

export const systemChecks: Check<DoctorContext>[] = [
  {
    id: 'platform',
    get deadlineMs() {
      return deadlines.localMs;
    },
    run: async (context) => platformFinding(context.platform),
  },
  {
    id: 'docker-cli',
    get deadlineMs() {
      return deadlines.dockerMs;
    },
    run: async (context) => {
      try {
        return ok(`docker ${await context.engine.clientVersion(deadlines.dockerMs)}`);
      } catch (error) {
        if (error instanceof DockerError && error.kind === 'not-installed') return fail(error.message, error.hint ?? 'install Docker');
        throw error;
      }
    },
  },
  {
    // Runs alongside docker-cli rather than after it: the daemon answer is the slow one.
    id: 'docker-daemon',
    get deadlineMs() {
      return deadlines.dockerMs;
    },
    timeoutFix: 'the daemon accepts connections but does not answer: restart it (sudo systemctl restart docker, or restart Docker Desktop)',
    run: async (context) => {
      try {
        const server = await context.engine.serverVersion(deadlines.dockerMs);
        if (!server) return fail('docker version reported no daemon', 'run docker info to see what the CLI is connected to');
        return ok(`Docker Engine ${server.Version} (API ${server.ApiVersion})${dockerEndpoint(context.env)}`);
      } catch (error) {
        if (!(error instanceof DockerError)) throw error;
        if (error.kind === 'not-installed') return skip('cannot be checked without the docker CLI');
        if (error.kind === 'command-failed') {
          return fail(error.message, 'run docker info to see the full error; check DOCKER_HOST and `docker context ls`');
        }
        return fail(error.message, error.hint ?? 'run docker info');
      }
    },
  },
  {
    // What the engine can run session containers under; gVisor (runsc) is the second wall.
    id: 'runtimes',
    needs: ['docker-daemon'],
    get deadlineMs() {
      return deadlines.dockerMs;
    },
    run: async (context) => {
      const offered = await context.engine.runtimes();
      if (offered.includes('runsc')) return ok(`${offered.join(', ')}: sessions can run under gVisor (start --runtime runsc)`);
      return ok(
        `${offered.join(', ') || 'none listed'}; gVisor is not registered. To add it: ${
          context.platform === 'darwin'
            ? 'Docker Desktop does not offer runsc; run the engine in a Linux VM with gVisor'
            : 'apt install runsc, add {"runtimes":{"runsc":{"path":"/usr/bin/runsc","runtimeArgs":["--network=host"]}}} to /etc/docker/daemon.json, then kill -HUP the dockerd'
        }`,
      );
    },
  },
  {
    id: 'git',
    get deadlineMs() {
      return deadlines.localMs;
    },
    run: async (context) => {
      let version: string;
      try {
        version = (await git(['--version'], { cwd: context.cwd })).stdout.replace(/^git version\s*/, '');
      } catch (error) {
        if (error instanceof GitError && error.code === 'git-not-installed') return fail(error.message, error.hint ?? 'install git');
        throw error;
      }
      const repo = await context.repo();
      if (!repo) {
        return warn(
          `git ${version}, but ${context.cwd} is not inside a git repository (the image checks still ran)`,
          'cd into your project, then run make doctor again',
        );
      }
      return ok(`git ${version}, repository ${repo.root}`);
    },
  },
];
