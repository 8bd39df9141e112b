// PARA_TRACE=1: one stderr line per subprocess with its start offset and duration, for finding
// where a script spends its time. Arguments are shown without values that could be secrets
// (none are ever passed, but a trace must stay safe to paste).
const enabled = process.env.PARA_TRACE === '1';
const origin = performance.now();

export async function traced<T>(tool: string, args: string[], run: () => Promise<T>): Promise<T> {
  if (!enabled) return run();
  const started = performance.now();
  try {
    return await run();
  } finally {
    const shown = args.slice(0, 3).join(' ');
    process.stderr.write(`[trace +${(started - origin).toFixed(0)}ms] ${tool} ${shown} (${(performance.now() - started).toFixed(0)}ms)\n`);
  }
}
