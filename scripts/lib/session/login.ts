// How a session container gets the Claude login. With the broker (the default) it holds none: it
// runs from the login image's credential-free parent (para-claude, or the repository's tools
// image), with a placeholder of the same kind, and claude's requests go to the engine's broker.
// With --credentials image it runs from the login image itself, the login baked in.
import { makeCommand } from '../cli.ts';
import { config, labels } from '../config.ts';
import type { Engine, ImageInfo } from '../engine/engine.ts';
import type { EgressMode } from '../egress/rules.ts';
import { ParaError } from '../errors.ts';
import { tarArchive } from '../tar.ts';
import { brokerForwarding, type CredentialsMode, placeholderLogin } from '../broker/broker.ts';

export interface SessionLogin {
  mode: CredentialsMode;
  /** The image the session container runs from. */
  sessionImage: string;
  /** broker: the image the broker takes the login from. */
  loginImage?: string;
  /** broker: the stand-in login (environment and files) and the forwarder's way to the broker. */
  placeholder?: ReturnType<typeof placeholderLogin>;
  forwarding?: ReturnType<typeof brokerForwarding>;
}

function holdsLogin(info: ImageInfo | undefined): boolean {
  return Boolean(info?.Config.Labels?.[labels.credentialsSource]);
}

type Layered = ImageInfo & { Parent?: string; RootFS?: { Layers?: string[] } };

/**
 * The image a login image was made from (make image commits one layer of credentials on it): its
 * Parent, or (an image that lost it, moved with docker save and load) para-claude when its layers
 * are the login image's but the last. Never an image that holds a login itself.
 */
async function loginBase(engine: Engine, info: ImageInfo): Promise<ImageInfo | undefined> {
  const image = info as Layered;
  const parent = image.Parent ? await engine.inspectImage(image.Parent) : undefined;
  if (parent && !holdsLogin(parent)) return parent;
  const candidate = (await engine.inspectImage(config.claudeImage)) as Layered | undefined;
  const mine = image.RootFS?.Layers ?? [];
  const theirs = candidate?.RootFS?.Layers ?? [];
  if (candidate && !holdsLogin(candidate) && theirs.length > 0 && theirs.length === mine.length - 1 && theirs.every((layer, i) => layer === mine[i]))
    return candidate;
  return undefined;
}

/**
 * The images of a session: `image` is what start was given (para-authenticated, a repository's
 * session image, or --image). An image with para's login is the broker's source and the session
 * runs from the image it was made from; an image without one is the session's, and the broker
 * takes the login from PARA_IMAGE.
 */
export async function planLogin(
  engine: Engine,
  mode: CredentialsMode,
  image: string,
  info: ImageInfo | undefined,
  egress: EgressMode,
  network: string | null,
  warn: (message: string) => void,
): Promise<SessionLogin> {
  // Without the proxy there is no forwarder to reach the broker through: the login stays baked in.
  if (mode === 'image' || egress !== 'allowlist' || !info) return { mode: 'image', sessionImage: image };
  let loginImage = image;
  let sessionImage = image;
  let loginInfo: ImageInfo | undefined = info;
  if (holdsLogin(info)) {
    const parentInfo = await loginBase(engine, info);
    if (!parentInfo) {
      // An image built on top of the login image (FROM para-authenticated, say): there is no version of it without the login.
      warn(
        `${image} holds your login and has no version without it (an image built FROM the login image?): this session carries the login, as with --credentials image; build such an image FROM para-claude, or put its tools in .para/image (run ${makeCommand('image')} again if it is para's own)`,
      );
      return { mode: 'image', sessionImage: image };
    }
    sessionImage = parentInfo.Id;
  } else {
    loginImage = config.authenticatedImage;
    loginInfo = await engine.inspectImage(loginImage);
    if (!holdsLogin(loginInfo)) {
      throw new ParaError(`the credential broker takes the login from ${loginImage}, which ${loginInfo ? 'holds no login para made' : 'does not exist'}`, {
        code: 'image-missing',
        hint: `run: ${makeCommand('image')}`,
      });
    }
  }
  const l = loginInfo?.Config.Labels ?? {};
  return {
    mode: 'broker',
    sessionImage,
    loginImage,
    placeholder: placeholderLogin(l[labels.authMethod], l[labels.subscriptionType]),
    forwarding: brokerForwarding(network, loginImage),
  };
}

/** Puts the placeholder's files in the session's home (the agent's own: claude may rewrite them). */
export async function copyPlaceholder(engine: Engine, container: string, login: SessionLogin, image: ImageInfo | undefined): Promise<void> {
  if (!login.placeholder || login.placeholder.files.length === 0) return;
  const uid = Number(image?.Config.Labels?.[labels.uid] ?? config.rootHostUid);
  const gid = Number(image?.Config.Labels?.[labels.gid] ?? config.rootHostGid);
  const entries = login.placeholder.files.map((f) => ({ path: f.path, mode: 0o600, content: f.content }));
  await engine.copyIn(container, `${config.containerHome}/`, tarArchive(entries, { uid, gid }));
}
