// A tar stream of a few small files with the owner and modes given: how credentials enter an
// image (docker cp --archive from standard input), so no secret touches a build context,
// a build cache or an intermediate image.

export interface TarEntry {
  /** Relative path; folders end with "/". */
  path: string;
  mode: number;
  content?: string | Buffer;
}

function header(name: string, size: number, mode: number, type: '0' | '5', uid: number, gid: number, mtime: number): Buffer {
  if (Buffer.byteLength(name) > 100) throw new Error(`tar: the name ${name} is too long`);
  const block = Buffer.alloc(512, 0);
  const octal = (value: number, length: number) => `${value.toString(8).padStart(length - 1, '0')}\0`;
  block.write(name, 0, 100, 'utf8');
  block.write(octal(mode, 8), 100);
  block.write(octal(uid, 8), 108);
  block.write(octal(gid, 8), 116);
  block.write(octal(size, 12), 124);
  block.write(octal(mtime, 12), 136);
  block.write('        ', 148); // the checksum counts itself as spaces
  block.write(type, 156);
  block.write('ustar\0', 257);
  block.write('00', 263);
  let sum = 0;
  for (const byte of block) sum += byte;
  block.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148);
  return block;
}

export function tarArchive(entries: TarEntry[], owner: { uid: number; gid: number }, mtime = Math.floor(Date.now() / 1000)): Buffer {
  const parts: Buffer[] = [];
  for (const entry of entries) {
    if (entry.path.endsWith('/')) {
      parts.push(header(entry.path, 0, entry.mode, '5', owner.uid, owner.gid, mtime));
      continue;
    }
    const data = Buffer.isBuffer(entry.content) ? entry.content : Buffer.from(entry.content ?? '', 'utf8');
    parts.push(header(entry.path, data.length, entry.mode, '0', owner.uid, owner.gid, mtime), data, Buffer.alloc((512 - (data.length % 512)) % 512, 0));
  }
  parts.push(Buffer.alloc(1024, 0));
  return Buffer.concat(parts);
}
