// A repository's own tools (.para/image/Dockerfile): built on para-claude, the login on top; a new
// login replaces only that last layer; a changed Dockerfile rebuilds the tools; bad folders are refused.
import fs from 'fs-extra';
import path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { docker } from '../scripts/lib/engine/docker.ts';
import { inspectImage } from './support/verbs.ts';
import { repoImageTags, toolsDockerfileProblem } from '../scripts/lib/image/repo-image.ts';
import {
  buildAuthImage,
  CLAUDE_IMAGE,
  FAKE_TOKEN,
  fakeHome,
  runScript,
  SESSION_IMAGE,
  sessionTestImage,
  testClaudeImage,
  testEgressImage,
} from './support/images.ts';
import { testNetwork } from './support/internet.ts';
import { sessionPaths } from '../scripts/lib/session/paths.ts';
import { makeRepo, type TestRepo } from './support/repos.ts';
import { RUN_ID, trackImage } from './support/resources.ts';

const TOOL = '#!/bin/sh\necho "the repository tool runs: $*"\n';
const DOCKERFILE = 'ARG PARA_BASE\nFROM ${PARA_BASE}\nUSER root\nCOPY para-test-tool /usr/local/bin/para-test-tool\nUSER para\n';

/** A repository whose committed .para/image adds a tool from a file of its own (no network). */
async function toolRepo(dockerfile = DOCKERFILE): Promise<TestRepo> {
  const repo = await makeRepo();
  const dir = path.join(repo.root, '.para', 'image');
  await fs.mkdir(dir, { recursive: true });
  await fs.writeFile(path.join(dir, 'para-test-tool'), TOOL, { mode: 0o755 });
  await fs.writeFile(path.join(dir, 'Dockerfile'), dockerfile);
  await repo.git(['add', '.para/image']);
  await repo.git(['commit', '-q', '-m', 'our tools']);
  const tags = repoImageTags({ root: repo.root, commonDir: path.join(repo.root, '.git') });
  trackImage(tags.session);
  trackImage(tags.tools);
  return repo;
}

function env(repo: TestRepo, login = SESSION_IMAGE): Record<string, string> {
  return { ...repo.env, PARA_IMAGE: login, PARA_CLAUDE_IMAGE: CLAUDE_IMAGE };
}

/** A detached session without --image (so the repository's image is chosen), running `command`; its output. */
async function run(repo: TestRepo, name: string, command: string, login?: string): Promise<{ stdout: string; stderr: string }> {
  const started = await runScript('start.ts', [name, '--container', '--detach', '--egress', 'none', '--', 'sh', '-c', command], {
    cwd: repo.root,
    env: env(repo, login),
  });
  assert.is(started.exitCode, 0, started.stderr);
  const logs = await runScript('logs.ts', [name, '-f'], { cwd: repo.root, env: env(repo, login) });
  assert.is(logs.exitCode, 0, logs.stderr);
  return { stdout: logs.stdout, stderr: started.stderr };
}

// ---- what a Dockerfile may build on (no engine) --------------------------------------------------

const dockerfiles = suite("what a repository's Dockerfile may build on");

dockerfiles('only ${PARA_BASE} and its own earlier stages, read as docker reads it (continued lines, comments, directives)', () => {
  const cases: Array<[string, boolean]> = [
    ['ARG PARA_BASE\nFROM ${PARA_BASE}\nRUN true\n', true],
    ['ARG PARA_BASE\nFROM $PARA_BASE\nUSER root\nCOPY x /y\n', true],
    ['ARG PARA_BASE\nFROM ${PARA_BASE} AS build\nRUN make\nFROM ${PARA_BASE}\nCOPY --from=build /out /usr/local/bin\nCOPY --from=0 /a /b\n', true],
    ['# a comment\nARG PARA_BASE\nFROM ${PARA_BASE}\nRUN apt-get install -y \\\n  # comment inside\n  git\n', true],
    ['FROM debian:bookworm\n', false],
    ['ARG PARA_BASE\nFROM ${PARA_BASE}\nFR\\\nOM other:img\n', false],
    ['ARG PARA_BASE\nFROM ${PARA_BASE:+other:img}\n', false],
    ['ARG PARA_BASE\nFROM ${PARA_BASE} AS a\nFROM other\n', false],
    ['ARG PARA_BASE\nFROM ${PARA_BASE}\nCOPY --from=para-authenticated:latest /home/para/.claude /x\n', false],
    ['ARG PARA_BASE\nFROM ${PARA_BASE}\nCOPY --chown=para:para --from=para-authenticated:latest /a /b\n', false],
    ['ARG PARA_BASE\nFROM ${PARA_BASE}\nRUN --mount=type=bind,from=para-authenticated:latest,target=/m cat /m/x\n', false],
    ['ARG PARA_BASE\nFROM ${PARA_BASE}\nCOPY --from=0 /a /b\n', false],
    ['ARG PARA_BASE\nFROM ${PARA_BASE}\nCO\\\nPY --from=img /a /b\n', false],
    ['# escape=`\nARG PARA_BASE\nFROM ${PARA_BASE}\n', false],
    ['# syntax=evil/frontend\nARG PARA_BASE\nFROM ${PARA_BASE}\n', false],
    ['ARG PARA_BASE\nFROM ${PARA_BASE}\nRUN echo \\ \nFROM other\n', false],
    ['RUN true\nFROM ${PARA_BASE}\n', false],
    ['ARG PARA_BASE\n', false],
    ['ARG PARA_BASE\nfrom ${PARA_BASE}\ncopy --FROM=x /a /b\n', false],
  ];
  for (const [text, ok] of cases) assert.is(toolsDockerfileProblem(text) === null, ok, `${JSON.stringify(text)}: ${toolsDockerfileProblem(text)}`);
});

dockerfiles.run();

const tools = suite("a repository's own tools");

tools.before(async () => {
  await Promise.all([testClaudeImage(), sessionTestImage()]);
});

tools('the tool from .para/image runs in the session; a new login reuses the tools layer; a changed Dockerfile rebuilds it', async () => {
  const repo = await toolRepo();
  const tags = repoImageTags({ root: repo.root, commonDir: '' });
  const first = await run(repo, 'tools-1', 'para-test-tool hello');
  assert.match(first.stdout, 'the repository tool runs: hello');
  assert.match(first.stderr, "building this repository's tools");
  assert.is(await repo.git(['status', '--porcelain']), '', '.para/image is committed and para changed no file of the repository');
  const toolsId = (await inspectImage(tags.tools))!.Id;
  const session = (await inspectImage(tags.session))!;
  assert.is(session.Config.User, 'para');
  assert.is(session.Config.Labels?.['dev.para.tools-image'], toolsId);
  assert.is(session.Config.Labels?.['dev.para.credentials-from'], (await inspectImage(SESSION_IMAGE))!.Id);

  // Nothing changed: the next start builds nothing.
  const again = await run(repo, 'tools-2', 'para-test-tool again');
  assert.not.match(again.stderr, 'building');
  assert.not.match(again.stderr, 'login');

  // A new login (another token) for PARA_IMAGE: only the credentials layer is made again.
  const token = `sk-ant-oat01-PARAFAKE${RUN_ID}NEWLOGIN`;
  const newLogin = trackImage(`para-repo-login-test-${RUN_ID}:auth`);
  const built = await buildAuthImage(newLogin, await fakeHome({ accessToken: token }));
  assert.is(built.exitCode, 0, built.stderr);
  const refreshed = await run(repo, 'tools-3', 'para-test-tool refreshed; cat ~/.claude/.credentials.json', newLogin);
  assert.match(refreshed.stderr, 'refreshing the login');
  assert.not.match(refreshed.stderr, 'building');
  assert.match(refreshed.stdout, 'the repository tool runs: refreshed');
  assert.match(refreshed.stdout, token);
  assert.is((await inspectImage(tags.tools))!.Id, toolsId, 'the tools layer was rebuilt for a new login');
  const top = (await docker(['history', '--format', '{{.Size}}', '--human=false', tags.session])).stdout.split('\n')[0];
  assert.ok(Number(top) < 64 * 1024, `the credentials layer weighs ${top} bytes`);

  // The team changes the Dockerfile: the tools are built again.
  await fs.appendFile(path.join(repo.root, '.para', 'image', 'Dockerfile'), 'ENV PARA_TEST_TOOLS_VERSION=2\n');
  const rebuilt = await run(repo, 'tools-4', 'echo "version $PARA_TEST_TOOLS_VERSION"');
  assert.match(rebuilt.stderr, "building this repository's tools");
  assert.match(rebuilt.stdout, 'version 2');
  assert.is.not((await inspectImage(tags.tools))!.Id, toolsId);
  // The images the new login and the new Dockerfile replaced stayed while sessions used them; once those are gone, clean removes them.
  const replaced = async () =>
    (await docker(['images', '-q', '--filter', 'dangling=true', '--filter', `label=dev.para.repo=${repo.root}`])).stdout.split('\n').filter(Boolean);
  assert.ok((await replaced()).length > 0, 'no image was replaced under a running session');
  const early = JSON.parse((await runScript('clean.ts', ['--dry-run', '--json'], { cwd: repo.root, env: env(repo) })).stdout);
  assert.equal(early.images, [], 'an image a session still uses is listed');
  for (const name of ['tools-1', 'tools-2', 'tools-3', 'tools-4']) await runScript('cancel.ts', [name, '--force'], { cwd: repo.root, env: env(repo) });
  const cleaned = await runScript('clean.ts', [], { cwd: repo.root, env: env(repo) });
  assert.is(cleaned.exitCode, 0, cleaned.stderr);
  assert.match(cleaned.stderr, /removed the replaced image \S+ of this repository \(it held a copy of your login\)/);
  assert.equal(await replaced(), []);
  assert.ok(await inspectImage(tags.tools), 'clean removed the current tools image');
});

tools('--image still wins, and a folder that is not a plain .para/image with FROM ${PARA_BASE} is refused before anything is made', async () => {
  const wrongFrom = await toolRepo('FROM debian:bookworm\nRUN true\n');
  const refused = await runScript('start.ts', ['bad-from', '--container', '--detach', '--egress', 'none', '--', 'true'], {
    cwd: wrongFrom.root,
    env: env(wrongFrom),
  });
  assert.is(refused.exitCode, 1);
  assert.match(refused.stderr, 'FROM ${PARA_BASE}');
  assert.is((await wrongFrom.git(['branch', '--list', 'para/*'])).trim(), '');
  const explicit = await runScript('start.ts', ['explicit', '--container', '--detach', '--egress', 'none', '--image', SESSION_IMAGE, '--', 'true'], {
    cwd: wrongFrom.root,
    env: env(wrongFrom),
  });
  assert.is(explicit.exitCode, 0, explicit.stderr);

  const linked = await makeRepo();
  const elsewhere = (await toolRepo()).root;
  await fs.mkdir(path.join(linked.root, '.para'), { recursive: true });
  await fs.symlink(path.join(elsewhere, '.para', 'image'), path.join(linked.root, '.para', 'image'));
  const link = await runScript('start.ts', ['linked', '--container', '--detach', '--egress', 'none', '--', 'true'], { cwd: linked.root, env: env(linked) });
  assert.is(link.exitCode, 1);
  assert.match(link.stderr, 'is not a folder');
});

tools("a Dockerfile that sets para's own labels is refused: a session container would carry them (a broker's role, a temporary leftover's owner)", async () => {
  const repo = await toolRepo(`${DOCKERFILE}LABEL dev.para.role=broker dev.para.broker-image=para-authenticated:latest team.label=fine\n`);
  const tags = repoImageTags({ root: repo.root, commonDir: '' });
  const refused = await runScript('start.ts', ['labelled', '--container', '--detach', '--egress', 'none', '--', 'true'], { cwd: repo.root, env: env(repo) });
  assert.is(refused.exitCode, 1, refused.stderr);
  assert.match(refused.stderr, "sets para's own labels (dev.para.broker-image, dev.para.role)");
  assert.is(await inspectImage(tags.tools), undefined, 'the tools image was kept');
  assert.is((await repo.git(['branch', '--list', 'para/*'])).trim(), '');
  // Nor may it copy from another image (a login image's credentials would land in the tools every brokered session runs from).
  const copier = await toolRepo(`${DOCKERFILE}COPY --from=${SESSION_IMAGE} /home/para/.claude/.credentials.json /home/para/stolen.json\n`);
  const copied = await runScript('start.ts', ['copier', '--container', '--detach', '--egress', 'none', '--', 'true'], { cwd: copier.root, env: env(copier) });
  assert.is(copied.exitCode, 1, copied.stderr);
  assert.match(copied.stderr, 'which is not an earlier stage of this Dockerfile');
  assert.is(await inspectImage(repoImageTags({ root: copier.root, commonDir: '' }).tools), undefined);
  // Labels of the team's own are fine.
  await fs.writeFile(path.join(repo.root, '.para', 'image', 'Dockerfile'), `${DOCKERFILE}LABEL team.label=fine\n`);
  const fine = await run(repo, 'labelled-ok', 'para-test-tool fine');
  assert.match(fine.stdout, 'the repository tool runs: fine');
  assert.is((await inspectImage(tags.tools))!.Config.Labels?.['team.label'], 'fine');
  await runScript('cancel.ts', ['labelled-ok', '--force'], { cwd: repo.root, env: env(repo) });
});

tools('with the broker (the default), the session runs from the tools image: no login layer is made, only the placeholder is in it', async () => {
  await testEgressImage();
  const { network } = await testNetwork([]);
  const repo = await toolRepo();
  const tags = repoImageTags({ root: repo.root, commonDir: '' });
  const body = 'para-test-tool brokered; cat ~/.claude/.credentials.json; claude auth status';
  const started = await runScript('start.ts', ['tools-b', '--container', '--detach', '--egress-network', network, '--no-user-config', '--', 'sh', '-c', body], {
    cwd: repo.root,
    env: env(repo),
  });
  assert.is(started.exitCode, 0, started.stderr);
  assert.not.match(started.stderr, 'adding your login');
  const logs = await runScript('logs.ts', ['tools-b', '-f'], { cwd: repo.root, env: env(repo) });
  assert.match(logs.stdout, 'the repository tool runs: brokered');
  assert.match(logs.stdout, 'PARA-BROKER-PLACEHOLDER');
  assert.match(logs.stdout, '"loggedIn": true');
  assert.not.match(logs.stdout, FAKE_TOKEN);
  assert.is(await inspectImage(tags.session), undefined, 'a session image with the login was made');
  const container = sessionPaths({ root: repo.root, commonDir: '' }, 'tools-b').container;
  const ran = (await docker(['inspect', '--format', '{{.Image}}', container])).stdout.trim();
  assert.is(ran, (await inspectImage(tags.tools))!.Id);
  assert.is((await runScript('cancel.ts', ['tools-b', '--force'], { cwd: repo.root, env: env(repo) })).exitCode, 0);
});

tools.run();
