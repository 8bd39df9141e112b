// The allowlist's rules, without Docker: which names are accepted as patterns, which hosts a
// pattern admits (anchored: no look-alikes), the host proxy setting, and the proxy's rule order.
import fs from 'fs-extra';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { UsageError } from '../scripts/lib/errors.ts';
import {
  blockedAddresses,
  impliedGateway,
  checkAllow,
  DEFAULT_ALLOWED_HOSTS,
  hostAllowed,
  hostPatternProblem,
  hostUpstream,
  squidConfig,
} from '../scripts/lib/egress/rules.ts';
import { localAddresses } from '../scripts/lib/egress/addresses.ts';

const rules = suite('allowlist rules');

rules('host patterns: names and *.suffix are accepted, anything else is refused with a reason', () => {
  for (const ok of ['api.anthropic.com', 'API.Anthropic.com.', 'localhost-like', '*.example.com', 'registry.npmjs.org', 'a-b.c-d.io']) {
    assert.is(hostPatternProblem(ok), undefined, ok);
  }
  const refused: Array<[string, RegExp]> = [
    ['', /empty/],
    ['*.com', /top-level domain/],
    ['10.0.0.1', /address/],
    ['api.anthropic.com/x', /not a host name/],
    ['api.*.com', /not a host name/],
    ['-bad.example', /not a host name/],
    ['exa mple.com', /not a host name/],
    ['a..b', /not a host name/],
    [`${'a'.repeat(64)}.com`, /not a host name/],
  ];
  for (const [pattern, why] of refused) assert.match(hostPatternProblem(pattern) ?? '', why, pattern);
});

rules('patterns are anchored: look-alikes that contain an allowed name are refused', () => {
  const list = [...DEFAULT_ALLOWED_HOSTS, '*.example.com'];
  assert.ok(hostAllowed('api.anthropic.com', list));
  assert.ok(hostAllowed('API.ANTHROPIC.COM', list));
  for (const lookalike of ['api.anthropic.com.evil.example', 'evilapi.anthropic.com', 'api-anthropic.com', 'xapi.anthropic.com', 'api.anthropic.community']) {
    assert.not.ok(hostAllowed(lookalike, list), lookalike);
  }
  assert.ok(hostAllowed('a.example.com', list));
  assert.ok(hostAllowed('a.b.example.com', list));
  assert.not.ok(hostAllowed('example.com', list), 'a wildcard admits subdomains only');
  assert.not.ok(hostAllowed('badexample.com', list));
  assert.not.ok(hostAllowed('example.com.evil.example', list));
});

rules('--allow values: repeatable, comma or space separated, checked, deduplicated', () => {
  assert.equal(checkAllow(['a.example', 'b.example, c.example', 'A.example']), ['a.example', 'b.example', 'c.example']);
  assert.throws(
    () => checkAllow(['ok.example', 'http://x.example']),
    (error: unknown) => error instanceof UsageError,
  );
});

rules("the host's proxy setting: address, password kept apart, NO_PROXY names", () => {
  assert.is(hostUpstream({}), null);
  const up = hostUpstream({ HTTPS_PROXY: 'http://me:p%40ss@proxy.corp.example:8080', NO_PROXY: 'localhost,.corp.example,10.0.0.0/8,*' });
  assert.equal(up, { host: 'proxy.corp.example', port: 8080, login: 'me:p@ss', direct: ['localhost', 'corp.example'] });
  assert.equal(hostUpstream({ http_proxy: 'proxy.example:3128' })?.port, 3128);
  assert.throws(
    () => hostUpstream({ HTTPS_PROXY: 'socks5://proxy.example:1080' }),
    (error: unknown) => error instanceof UsageError,
  );
});

rules("the proxy's rules: names judged before any lookup, addresses after, then allow; the password only in a login", () => {
  const conf = squidConfig({
    hosts: ['api.anthropic.com', '*.example.com'],
    blocked: blockedAddresses(['172.18.0.1']),
    upstream: { host: 'proxy.corp.example', port: 8080, login: 'me:secret', direct: [] },
    port: 3128,
    dns: ['10.0.0.2'],
  });
  const lines = conf.split('\n');
  const at = (prefix: string) => lines.findIndex((line) => line.startsWith(prefix));
  assert.ok(at('http_access deny !para_connect') < at('http_access deny !para_tls'));
  assert.ok(at('http_access deny !para_tls') < at('http_access deny !para_allowed'));
  assert.ok(at('http_access deny !para_allowed') < at('http_access deny para_blocked'));
  assert.ok(at('http_access deny para_blocked') < at('http_access allow'));
  assert.match(conf, 'acl para_allowed dstdom_regex -n -i ^api\\.anthropic\\.com$ ^([a-z0-9-]+\\.)+example\\.com$');
  assert.match(conf, /acl para_blocked dst .*127\.0\.0\.0\/8.*169\.254\.0\.0\/16.*172\.18\.0\.1/);
  assert.match(conf, 'http_port 127.0.0.1:3128');
  assert.match(conf, 'dns_nameservers 10.0.0.2');
  assert.match(conf, 'cache_peer proxy.corp.example parent 8080 0 no-query no-digest no-netdb-exchange default name=upstream login=me:secret');
  assert.match(conf, 'never_direct allow all');
  assert.is(conf.split('me:secret').length, 2, 'the password appears once, in the login');
});

rules("the Docker host's addresses: a network's implied gateway, this machine's down interfaces, metadata services", async () => {
  assert.is(impliedGateway('10.231.0.0/24'), '10.231.0.1');
  assert.is(impliedGateway('172.23.0.0/16'), '172.23.0.1');
  assert.is(impliedGateway('10.1.2.128/25'), '10.1.2.129');
  assert.is(impliedGateway('fd00:1:2::/64'), 'fd00:1:2::1');
  const local = await localAddresses();
  assert.ok(local.includes('127.0.0.1'));
  if (process.platform === 'linux') {
    // Every IPv4 address the kernel holds as local, whether or not its interface is up.
    const trie = await fs.readFile('/proc/net/fib_trie', 'utf8');
    const lines = trie.split('\n');
    for (const [i, line] of lines.entries()) {
      const address = /\|--\s+(\d+\.\d+\.\d+\.\d+)/.exec(line)?.[1];
      if (address && /\/32 host LOCAL/.test(lines[i + 1] ?? '')) assert.ok(local.includes(address), address);
    }
  }
  const blocked = blockedAddresses(['10.231.0.1']);
  for (const address of ['10.231.0.1', '169.254.0.0/16', '100.100.100.200', 'fd00:ec2::254', '127.0.0.0/8', '::1'])
    assert.ok(blocked.includes(address), address);
  assert.match(hostPatternProblem('0x7f000001') ?? '', /address/);
});

rules.run();
