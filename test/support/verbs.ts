// The engine verbs for tests, on the engine the test's shell names (as the tests ran them before
// the engine became an object): tests inspect and remove what they made through the same code as para.
import { shellEngine, type BuildOptions, type Labels } from '../../scripts/lib/engine/engine.ts';

const e = shellEngine;
export const inspectImage = (ref: string) => e.inspectImage(ref);
export const imageExists = async (ref: string) => (await e.inspectImage(ref)) !== undefined;
export const buildImage = (options: BuildOptions) => e.buildImage(options);
export const tagImage = (source: string, target: string) => e.tagImage(source, target);
export const removeImage = (ref: string, options?: { force?: boolean }) => e.removeImage(ref, options);
export const inspectContainer = (ref: string) => e.inspectContainer(ref);
export const listContainers = (options: { labels: Labels }) => e.listContainers(options.labels);
export const removeContainer = (ref: string, options?: { force?: boolean }) => e.removeContainer(ref, options);
export const pauseContainer = (ref: string) => e.pauseContainer(ref);
export const unpauseContainer = (ref: string) => e.unpauseContainer(ref);
export const startContainer = (ref: string) => e.startContainer(ref);
export const restartContainer = (ref: string) => e.restartContainer(ref);
export const commitContainer = (ref: string, tag: string, changes?: string[]) => e.commitContainer(ref, tag, changes);
export const inspectVolume = (name: string) => e.inspectVolume(name);
export const listVolumes = (options: { labels: Labels }) => e.listVolumes(options.labels);
export const removeVolume = (name: string) => e.removeVolume(name);
export const dockerClientVersion = (timeoutMs?: number) => e.clientVersion(timeoutMs);
export const dockerServerVersion = (timeoutMs?: number) => e.serverVersion(timeoutMs);
