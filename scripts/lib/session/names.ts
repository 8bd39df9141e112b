// Session names: validation, and a readable name derived from a prompt.
import { SESSION_NAME_PATTERN } from './paths.ts';

const MAX_WORDS = 6;
const MAX_LENGTH = 40;

/** "Implement feature X!" -> "implement-feature-x"; never empty, always a valid session name. */
export function nameFromPrompt(prompt: string): string {
  const words = prompt
    .normalize('NFKD')
    .replace(/[\u0300-\u036f]/g, '')
    .toLowerCase()
    .split(/[^a-z0-9]+/)
    .filter(Boolean)
    .slice(0, MAX_WORDS);
  let name = '';
  for (const word of words) {
    const next = name ? `${name}-${word}` : word;
    if (next.length > MAX_LENGTH) break;
    name = next;
  }
  if (!name) name = (words[0] ?? 'session').slice(0, MAX_LENGTH);
  return SESSION_NAME_PATTERN.test(name) ? name : 'session';
}

/** The n-th candidate for a derived name: name, name-2, name-3, ... */
export function candidateName(base: string, attempt: number): string {
  return attempt <= 1 ? base : `${base}-${attempt}`;
}

/** A positional argument containing whitespace is a prompt, not a name. */
export function looksLikePrompt(argument: string): boolean {
  return /\s/.test(argument.trim()) || argument.trim() !== argument;
}
