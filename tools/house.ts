// The house drawn from the code's own imports: rooms (modules under scripts/), arrows (relative
// imports between them), circles (import cycles), back-arrows (scripts/lib importing a script, or
// an area importing the area that uses it), the largest files and the README's size.
// Run: node --import tsx tools/house.ts [--json]
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const scripts = path.join(root, 'scripts');

function walk(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) return walk(full);
    return entry.name.endsWith('.ts') ? [full] : [];
  });
}

const files = walk(scripts).sort();
const rel = (file: string) => path.relative(scripts, file);
const edges = new Map<string, Set<string>>();
for (const file of files) {
  const text = fs.readFileSync(file, 'utf8');
  const targets = new Set<string>();
  for (const match of text.matchAll(/^\s*(?:import|export)\s[^;]*?from\s+'(\.[^']+)'/gms)) {
    const target = path.resolve(path.dirname(file), match[1]);
    if (fs.existsSync(target)) targets.add(rel(target));
  }
  edges.set(rel(file), targets);
}

// Strongly connected components (Tarjan): each with more than one room is a circle.
const index = new Map<string, number>();
const low = new Map<string, number>();
const stack: string[] = [];
const onStack = new Set<string>();
const circles: string[][] = [];
let counter = 0;
function connect(v: string): void {
  index.set(v, counter);
  low.set(v, counter);
  counter += 1;
  stack.push(v);
  onStack.add(v);
  for (const w of edges.get(v) ?? []) {
    if (!index.has(w)) {
      connect(w);
      low.set(v, Math.min(low.get(v)!, low.get(w)!));
    } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
  }
  if (low.get(v) === index.get(v)) {
    const component: string[] = [];
    let w: string;
    do {
      w = stack.pop()!;
      onStack.delete(w);
      component.push(w);
    } while (w !== v);
    if (component.length > 1) circles.push(component.sort());
  }
}
for (const v of edges.keys()) if (!index.has(v)) connect(v);

// An area is lib/<area>/; lib/*.ts files are the ground floor. The areas stand in this order,
// each on the ones before it. A back-arrow: lib importing a script, or a module importing an area
// that stands above its own (the ground floor is below every area).
const FLOORS = ['ground', 'engine', 'egress', 'image', 'session', 'doctor', 'mcp'];
const area = (file: string) => {
  const parts = file.split(path.sep);
  if (parts[0] !== 'lib') return 'script';
  return parts.length > 2 ? parts[1] : 'ground';
};
const backArrows: string[] = [];
for (const [from, targets] of edges) {
  for (const to of targets) {
    const a = area(from);
    const b = area(to);
    if (a !== 'script' && b === 'script') backArrows.push(`${from} -> ${to}`);
    else if (a !== 'script' && FLOORS.indexOf(b) > FLOORS.indexOf(a)) backArrows.push(`${from} -> ${to}`);
  }
}
// Which areas import which: an area pair that imports both ways is also a circle between areas.
const areaEdges = new Map<string, Set<string>>();
for (const [from, targets] of edges) {
  for (const to of targets) {
    const a = area(from);
    const b = area(to);
    if (a === b || a === 'script' || b === 'script' || a === 'ground' || b === 'ground') continue;
    if (!areaEdges.has(a)) areaEdges.set(a, new Set());
    areaEdges.get(a)!.add(b);
  }
}
const areaCircles: string[] = [];
for (const [a, targets] of areaEdges) for (const b of targets) if (a < b && areaEdges.get(b)?.has(a)) areaCircles.push(`${a} <-> ${b}`);

const lines = files.map((file) => ({ file: rel(file), lines: fs.readFileSync(file, 'utf8').split('\n').length - 1 }));
const total = lines.reduce((sum, f) => sum + f.lines, 0);
const byArea = new Map<string, number>();
for (const f of lines) byArea.set(area(f.file), (byArea.get(area(f.file)) ?? 0) + f.lines);
const largest = [...lines].sort((a, b) => b.lines - a.lines).slice(0, 5);
const readme = fs.statSync(path.join(root, 'README.md')).size;
const report = {
  rooms: files.length,
  arrows: [...edges.values()].reduce((sum, t) => sum + t.size, 0),
  circles,
  areaCircles,
  backArrows,
  lines: total,
  areas: Object.fromEntries([...byArea].sort((a, b) => b[1] - a[1]).map(([k, v]) => [k, `${v} lines (${Math.round((100 * v) / total)}%)`])),
  largest,
  readmeBytes: readme,
};
if (process.argv.includes('--json')) process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
else {
  const out = [
    `rooms ${report.rooms}, arrows ${report.arrows}, circles ${circles.length}, circles between areas ${areaCircles.length}, back-arrows ${backArrows.length}`,
    ...circles.map((c) => `  circle: ${c.join(' <-> ')}`),
    ...areaCircles.map((c) => `  areas importing each other: ${c}`),
    ...backArrows.map((b) => `  back-arrow: ${b}`),
    `lines ${total}; by area: ${Object.entries(report.areas)
      .map(([k, v]) => `${k} ${v}`)
      .join(', ')}`,
    `largest: ${largest.map((f) => `${f.file} ${f.lines}`).join(', ')}`,
    `README.md ${readme} bytes`,
  ];
  process.stdout.write(`${out.join('\n')}\n`);
}
