// The image a benchmark starts sessions from: the one given (which must exist), or a throwaway
// authenticated image built from a fake login with the real build-image.ts (removed at the end).
import { UsageError } from '../scripts/lib/errors.ts';
import { buildAuthImage, fakeHome } from '../test/support/images.ts';
import { imageExists } from '../test/support/verbs.ts';

export async function benchImage(given: string | undefined, throwaway: string): Promise<string> {
  if (given) {
    if (!(await imageExists(given))) throw new UsageError(`the image ${given} does not exist`, 'run make image, or leave out --image to build a throwaway one');
    return given;
  }
  process.stderr.write(`building the throwaway image ${throwaway} from a fake login...\n`);
  const build = await buildAuthImage(throwaway, await fakeHome());
  if (build.exitCode !== 0) throw new Error(`build-image.ts failed:\n${build.stderr}`);
  return throwaway;
}
