// What every benchmark measures with: the median of several runs, and the wall time of one.
export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

export async function timed(run: () => Promise<unknown>): Promise<number> {
  const started = performance.now();
  await run();
  return performance.now() - started;
}

/** One figure of a benchmark's report: its label, the median and every run, in seconds. */
export function line(label: string, ms: number[]): string {
  return `  ${label.padEnd(44)} median ${(median(ms) / 1000).toFixed(3)} s   (${ms.map((v) => (v / 1000).toFixed(2)).join(' ')})`;
}

/** A size as docker stats prints it (the first one in the text: "15.1MiB / 128MiB"), in MiB. */
export function mebibytes(text: string): number {
  const [value, unit] = /([\d.]+)\s*([KMG]i?B)/.exec(text)?.slice(1) ?? ['0', 'MiB'];
  return Number(value) * ({ KiB: 1 / 1024, MiB: 1, GiB: 1024 }[unit] ?? 1);
}
