// Human durations for doctor messages.
const UNITS: Array<[string, number]> = [
  ['day', 24 * 3600_000],
  ['hour', 3600_000],
  ['minute', 60_000],
  ['second', 1000],
];

export function duration(ms: number): string {
  const abs = Math.abs(ms);
  for (const [unit, size] of UNITS) {
    if (abs >= size) {
      const count = Math.floor(abs / size);
      return `${count} ${unit}${count === 1 ? '' : 's'}`;
    }
  }
  return 'less than a second';
}

/** "3 days ago" or "in 3 days", relative to now. */
export function relative(at: number, now: number): string {
  return at <= now ? `${duration(now - at)} ago` : `in ${duration(at - now)}`;
}

/** A label's ISO date as ms, or undefined when absent or not a date. */
export function parseDate(value: string | undefined): number | undefined {
  if (!value) return undefined;
  const ms = Date.parse(value);
  return Number.isNaN(ms) ? undefined : ms;
}
