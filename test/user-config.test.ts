// The user's Claude setup carried into a session from a fake home that holds each kind of file:
// what is carried arrives root-owned (readable, not writable in place, by the agent), and no
// secret, history, hook, MCP server, environment value or link does. --no-user-config skips it.
import fs from 'fs-extra';
import path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { docker } from '../scripts/lib/engine/docker.ts';
import { sessionPaths } from '../scripts/lib/session/paths.ts';
import { detachedArgs, FAKE_TOKEN, runScript, SESSION_IMAGE, sessionTestImage } from './support/images.ts';
import { makeRepo } from './support/repos.ts';
import { tempDir } from './support/resources.ts';

const SECRET = `sk-ant-api03-PARAFAKE-user-config-${FAKE_TOKEN.slice(-12)}`;

async function fakeSetup(): Promise<string> {
  const home = await tempDir('para-test-user-home-');
  const c = path.join(home, '.claude');
  await fs.outputFile(path.join(c, 'CLAUDE.md'), '# my rules\nAlways write tests first.\n');
  await fs.outputFile(path.join(c, 'commands', 'review.md'), 'Review the diff.\n');
  await fs.outputFile(path.join(c, 'commands', 'nested', 'deep.md'), 'Deep command.\n');
  await fs.outputFile(path.join(c, 'agents', 'tester.md'), '---\nname: tester\n---\nYou test.\n');
  await fs.outputFile(path.join(c, 'skills', 'pdf', 'SKILL.md'), '---\nname: pdf\n---\nRead PDFs.\n');
  await fs.outputFile(path.join(c, 'output-styles', 'terse.md'), '---\nname: terse\n---\nBe terse.\n');
  await fs.symlink('/etc/passwd', path.join(c, 'commands', 'linked.md'));
  // What must stay home.
  await fs.outputFile(path.join(c, '.credentials.json'), JSON.stringify({ claudeAiOauth: { accessToken: SECRET } }));
  await fs.outputFile(path.join(c, 'projects', '-home-me-secret', 'chat.jsonl'), `{"said":"${SECRET}"}\n`);
  await fs.outputJson(path.join(c, 'settings.json'), {
    model: 'opus',
    outputStyle: 'terse',
    permissions: { allow: ['Bash(npm test:*)', 'Read(/home/me/private/**)'], additionalDirectories: ['/home/me/other'] },
    hooks: { PostToolUse: [{ matcher: '*', hooks: [{ type: 'command', command: 'curl evil.example' }] }] },
    env: { ANTHROPIC_API_KEY: SECRET },
    apiKeyHelper: '/home/me/bin/key',
    mcpServers: { local: { command: '/home/me/bin/server' } },
  });
  await fs.outputJson(path.join(home, '.claude.json'), {
    projects: { '/home/me/secret': { history: [SECRET] } },
    mcpServers: { tools: { type: 'stdio', command: 'para-test-tool', args: ['--serve'] }, secretive: { command: 'x', env: { TOKEN: SECRET } } },
  });
  return home;
}

const carried = suite("the user's Claude setup in a session");

carried.before(sessionTestImage);

carried('CLAUDE.md, commands, agents, skills, output styles and safe settings arrive; secrets, history, hooks, MCP servers and links do not', async () => {
  const repo = await makeRepo();
  const home = await fakeSetup();
  const started = await runScript('start.ts', detachedArgs('setup', SESSION_IMAGE, '--', 'sleep', '600'), { cwd: repo.root, env: { ...repo.env, HOME: home } });
  assert.is(started.exitCode, 0, started.stderr);
  const container = sessionPaths({ root: repo.root, commonDir: '' }, 'setup').container;
  const inside = (command: string) => docker(['exec', '-u', 'para', container, 'sh', '-c', command], { allowFailure: true });
  assert.match((await inside('cat ~/.claude/CLAUDE.md')).stdout, 'Always write tests first.');
  for (const file of ['commands/review.md', 'commands/nested/deep.md', 'agents/tester.md', 'skills/pdf/SKILL.md', 'output-styles/terse.md'])
    assert.is((await inside(`test -f ~/.claude/${file} && stat -c %U ~/.claude/${file}`)).stdout.trim(), 'root', file);
  assert.is.not((await inside('echo changed >> ~/.claude/CLAUDE.md')).exitCode, 0, 'the agent changed CLAUDE.md in place');
  assert.is((await inside('test -e ~/.claude/commands/linked.md && echo there || echo absent')).stdout.trim(), 'absent');
  const settings = JSON.parse((await inside('cat ~/.claude/settings.json')).stdout) as Record<string, unknown>;
  assert.is(settings.model, 'opus');
  assert.is(settings.outputStyle, 'terse');
  assert.equal(settings.permissions, { allow: ['Bash(npm test:*)'] });
  for (const key of ['hooks', 'apiKeyHelper', 'mcpServers']) assert.not.ok(key in settings, key);
  assert.not.match(JSON.stringify(settings.env ?? {}), 'ANTHROPIC_API_KEY');
  // The secret is nowhere the agent can read.
  const found = await docker(['exec', '-u', '0', container, 'sh', '-c', `grep -rl "${SECRET}" /home /para /tmp /etc 2>/dev/null; true`]);
  assert.is(found.stdout.trim(), '');
  assert.not.match((await docker(['inspect', container])).stdout, SECRET);
  // MCP servers come only when named, one by one; one holding env values is refused before anything is made.
  const claudeJson = JSON.parse((await inside('cat ~/.claude.json')).stdout) as { mcpServers?: Record<string, unknown>; projects?: Record<string, unknown> };
  assert.is(claudeJson.mcpServers, undefined);
  const chosen = await runScript('start.ts', detachedArgs('mcp', SESSION_IMAGE, '--mcp-server', 'tools', '--', 'sleep', '600'), {
    cwd: repo.root,
    env: { ...repo.env, HOME: home },
  });
  assert.is(chosen.exitCode, 0, chosen.stderr);
  const withTool = JSON.parse(
    (await docker(['exec', '-u', 'para', sessionPaths({ root: repo.root, commonDir: '' }, 'mcp').container, 'cat', '/home/para/.claude.json'])).stdout,
  ) as { mcpServers: Record<string, unknown>; projects: Record<string, unknown> };
  assert.equal(Object.keys(withTool.mcpServers), ['tools']);
  assert.not.ok('/home/me/secret' in (withTool.projects ?? {}));
  const refused = await runScript('start.ts', detachedArgs('leaky', SESSION_IMAGE, '--mcp-server', 'secretive', '--', 'true'), {
    cwd: repo.root,
    env: { ...repo.env, HOME: home },
  });
  assert.is(refused.exitCode, 2, refused.stderr);
  assert.match(refused.stderr, 'environment values or headers');
  const unknown = await runScript('start.ts', detachedArgs('nope', SESSION_IMAGE, '--mcp-server', 'nosuch', '--', 'true'), {
    cwd: repo.root,
    env: { ...repo.env, HOME: home },
  });
  assert.is(unknown.exitCode, 2);
  assert.match(unknown.stderr, 'choose one of: tools, secretive');
  assert.is(await repo.git(['branch', '--list', 'para/leaky', 'para/nope']), '');
  // --no-user-config: nothing of it.
  const bare = await runScript('start.ts', detachedArgs('bare', SESSION_IMAGE, '--no-user-config', '--', 'sleep', '600'), {
    cwd: repo.root,
    env: { ...repo.env, HOME: home },
  });
  assert.is(bare.exitCode, 0, bare.stderr);
  const other = sessionPaths({ root: repo.root, commonDir: '' }, 'bare').container;
  assert.is((await docker(['exec', '-u', 'para', other, 'sh', '-c', 'test -e ~/.claude/CLAUDE.md && echo there || echo absent'])).stdout.trim(), 'absent');
  for (const name of ['setup', 'bare', 'mcp']) await runScript('cancel.ts', [name, '--force'], { cwd: repo.root, env: repo.env });
});

carried.run();
