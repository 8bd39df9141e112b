// Image checks: the image exists and what its labels say; claude inside it is logged in.
import { makeCommand } from '../cli.ts';
import { config, labels } from '../config.ts';
import { DockerError } from '../engine/docker.ts';
import { imageUserIds } from '../image/build.ts';
import { deadlines, makeImageCommand, type DoctorContext } from './context.ts';
import { fail, ok, skip, warn, type Check, type Finding } from './runner.ts';
import { onlineCheck, type OnlineVerdict } from '../image/online-check.ts';
import { parseDate, relative } from './time.ts';

const SOURCE_NAMES: Record<string, string> = {
  subscription: 'a subscription login',
  'oauth-token': 'a setup-token',
  'api-key': 'an API key',
  login: 'a login made in a container (make login)',
};

export function describeCredentialsSource(source: string | undefined): string {
  return source ? (SOURCE_NAMES[source] ?? source) : 'unknown credentials';
}

/** The online check's verdict as a finding: accepted is ok, rejected fails, unreachable warns. */
export function onlineFinding(verdict: OnlineVerdict, context: Pick<DoctorContext, 'image' | 'imageExplicit'>): Finding {
  switch (verdict.outcome) {
    case 'accepted':
      return ok(`the Anthropic API accepted the login in ${context.image} (one real request, through an egress proxy)`);
    case 'rejected':
      return fail(
        `the Anthropic API rejected the login in ${context.image}: ${verdict.detail}`,
        `${makeImageCommand(context as DoctorContext)} with a fresh login (or make login)`,
      );
    case 'unreachable':
      return warn(
        `the Anthropic API could not be reached, so the login was not tried: ${verdict.detail}`,
        'check the network the proxy reaches out through (--egress-network) and the host proxy settings (HTTPS_PROXY)',
      );
    default:
      return warn(`the online check could not tell: ${verdict.detail}`, 'run claude in a session to see the full error');
  }
}

export const imageChecks: Check<DoctorContext>[] = [
  {
    id: 'image',
    needs: ['docker-daemon'],
    get deadlineMs() {
      return deadlines.dockerMs;
    },
    run: async (context) => {
      const info = await context.imageInfo();
      if (!info) {
        return fail(`${context.image} does not exist`, makeImageCommand(context));
      }
      const l = info.Config.Labels ?? {};
      const builtAt = parseDate(l[labels.builtAt]) ?? parseDate(info.Created);
      const age = builtAt === undefined ? 'built at an unknown time' : `built ${relative(builtAt, context.now())} (${new Date(builtAt).toISOString()})`;
      const facts = [age];
      if (l[labels.credentialsSource]) {
        const subscription = l[labels.subscriptionType] ? `, ${l[labels.subscriptionType]}` : '';
        facts.push(`${describeCredentialsSource(l[labels.credentialsSource])} (${l[labels.authMethod] ?? 'unknown method'}${subscription})`);
      }
      if (l[labels.baseImage]) facts.push(`base ${l[labels.baseImage]}`);
      if (l[labels.uid]) facts.push(`uid ${l[labels.uid]}`);
      const summary = `${context.image}: ${facts.join(', ')}`;
      if (!l[labels.credentialsSource] && !l[labels.authMethod]) {
        return warn(`${summary}; it has no credential labels, so it was not made by make image`, makeImageCommand(context));
      }
      const hostUid = imageUserIds().uid;
      if (l[labels.uid] && l[labels.uid] !== String(hostUid)) {
        return warn(
          `${summary}; its user has uid ${l[labels.uid]} but yours is ${hostUid}, so files the agent writes will not be yours`,
          makeCommand('image', { REBUILD_BASE: '1' }),
        );
      }
      return ok(summary);
    },
  },
  {
    id: 'egress-image',
    needs: ['docker-daemon'],
    get deadlineMs() {
      return deadlines.dockerMs;
    },
    run: async (context) => {
      const image = config.egressImage;
      const info = await context.engine.inspectImage(image);
      if (!info)
        return fail(
          `${image} (the sessions' egress proxy) does not exist: container sessions with the default --egress allowlist cannot start`,
          makeCommand('image'),
        );
      const l = info.Config.Labels ?? {};
      if (!l[labels.egressUser]) return fail(`${image} was not made by make image (no ${labels.egressUser} label)`, makeCommand('image'));
      return ok(`${image}: base ${l[labels.baseImage] ?? 'unknown'}, proxy user ${l[labels.egressUser]}`);
    },
  },
  {
    id: 'image-auth',
    needs: ['image'],
    get deadlineMs() {
      return deadlines.containerMs;
    },
    timeoutFix: (context) => `see what claude does in the image: docker run --rm -it --network none ${context.image} claude auth status`,
    run: async (context) => {
      const fix = `${makeImageCommand(context)} (after logging in on the host), or ${makeCommand('login')}`;
      let status: Awaited<ReturnType<DoctorContext['authStatus']>>;
      try {
        status = await context.authStatus();
      } catch (error) {
        if (error instanceof DockerError && error.kind === 'command-failed') return fail(error.message, error.hint ?? fix);
        throw error;
      }
      if (!status) return fail(`${context.image} does not exist`, makeImageCommand(context));
      if (!status.loggedIn) {
        return fail(`claude inside ${context.image} is not logged in (authMethod ${status.authMethod})`, fix);
      }
      const expected = (await context.imageInfo())?.Config.Labels?.[labels.authMethod];
      const subscription = status.subscriptionType ? `, ${status.subscriptionType}` : '';
      if (expected && expected !== status.authMethod) {
        return warn(`claude inside ${context.image} is logged in with ${status.authMethod}, but the image was built for ${expected}`, fix);
      }
      return ok(`claude inside the image is logged in (${status.authMethod}${subscription}), checked with --network none`);
    },
  },
  {
    id: 'image-online',
    needs: ['image-auth', 'egress-image'],
    // One real request through a proxy of its own: slower than the other checks.
    get deadlineMs() {
      return config.timeouts.verifyMs + 30_000;
    },
    run: async (context) => {
      if (!context.online) return skip("not asked for (--online makes one real request with the image's credentials)");
      const verdict = await onlineCheck(context.engine, context.image, { network: context.egressNetwork, warn: () => undefined, broker: 'shared' });
      return onlineFinding(verdict, context);
    },
  },
];
