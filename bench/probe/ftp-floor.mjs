// The least a Node FTP server can do per small file, to tell what Node costs from what sluice adds
// (README, Performance). Not a server to use: no users, no chroot, no audit, no limits; it listens on
// 127.0.0.1 only and takes just what Python's ftplib sends for STOR and RETR.
//
//   node bench/probe/ftp-floor.mjs PORT ROOT MODE PASV_BASE
//
// MODE says what a STOR does to the file system:
//   direct  open with O_TRUNC, write, close: vsftpd's calls
//   atomic  a staged name, then a rename over the final one (sluice's uploads.atomic)
//   checks  atomic plus the calls sluice adds for a new file in a directory it keeps open: the kept
//           directory's and the name's lstat together, the readlink of the directory, and the hold of the
//           target with the staged file's lstat beside its close
// A RETR opens, fstats, reads and closes in every mode. Passive ports: PASV_BASE to PASV_BASE + 99.
import net from 'node:net';
import { constants as C } from 'node:fs';
import { mkdir, open, rename } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { commitChecked, stageChecked } from './floor-checks.mjs';

const [port, root, mode, pasvBase] = [Number(process.argv[2]), process.argv[3], process.argv[4], Number(process.argv[5])];
if (!port || !root || !['direct', 'atomic', 'checks'].includes(mode) || !pasvBase) {
  console.error('usage: ftp-floor.mjs PORT ROOT direct|atomic|checks PASV_BASE');
  process.exit(2);
}
let nextPort = 0;
let staged = 0;

async function store(name, data) {
  const final = join(root, name);
  if (mode === 'direct') {
    const fh = await open(final, 'w');
    for await (const chunk of data) await fh.write(chunk);
    return fh.close();
  }
  const tmp = `.floor-${process.pid}-${staged++}`;
  if (mode === 'atomic') {
    const fh = await open(join(dirname(final), tmp), 'wx');
    for await (const chunk of data) await fh.write(chunk);
    await fh.close();
    return rename(join(dirname(final), tmp), final);
  }
  const upload = await stageChecked(final);
  for await (const chunk of data) await upload.fh.write(chunk);
  return commitChecked(upload);
}

async function retrieve(name, data) {
  const fh = await open(join(root, name), C.O_RDONLY | C.O_NOFOLLOW);
  try {
    const { size } = await fh.stat();
    const { buffer, bytesRead } = await fh.read(Buffer.allocUnsafe(size), 0, size, 0);
    await new Promise((resolve) => data.end(buffer.subarray(0, bytesRead), resolve));
  } finally {
    await fh.close();
  }
}

net.createServer((control) => {
  control.setNoDelay(true);
  control.on('error', () => undefined);
  const reply = (line) => control.write(line + '\r\n');
  let pending = null;
  const openPassive = async () => {
    for (;;) {
      const p = pasvBase + (nextPort++ % 100);
      const listener = net.createServer({ noDelay: true });
      const conn = new Promise((resolve) => listener.once('connection', (c) => { listener.close(); resolve(c); }));
      if (await new Promise((ok) => { listener.once('error', () => ok(false)); listener.listen(p, '127.0.0.1', () => ok(true)); })) {
        pending = conn;
        return p;
      }
    }
  };
  const handle = async (line) => {
    const sp = line.indexOf(' ');
    const cmd = (sp < 0 ? line : line.slice(0, sp)).toUpperCase();
    const arg = sp < 0 ? '' : line.slice(sp + 1);
    switch (cmd) {
      case 'USER': return reply('331 any password');
      case 'PASS': return reply('230 in');
      case 'TYPE': return reply('200 binary');
      case 'MKD': await mkdir(join(root, arg), { recursive: true }); return reply(`257 "${arg}"`);
      case 'PASV': { const p = await openPassive(); return reply(`227 Entering Passive Mode (127,0,0,1,${p >> 8},${p & 255})`); }
      case 'EPSV': { const p = await openPassive(); return reply(`229 Entering Extended Passive Mode (|||${p}|)`); }
      case 'STOR': case 'RETR': {
        const data = await pending;
        pending = null;
        reply('150 data');
        await (cmd === 'STOR' ? store(arg, data) : retrieve(arg, data));
        return reply('226 done');
      }
      case 'QUIT': reply('221 bye'); return control.end();
      default: return reply('502 not here');
    }
  };
  let text = '';
  let queue = Promise.resolve();
  control.on('data', (bytes) => {
    text += bytes.toString('latin1');
    for (let i; (i = text.indexOf('\r\n')) >= 0; text = text.slice(i + 2)) {
      const line = text.slice(0, i);
      queue = queue.then(() => handle(line)).catch((err) => reply(`550 ${err.code ?? err.message}`));
    }
  });
  reply('220 floor');
}).listen(port, '127.0.0.1');
