// The least a Node SFTP server on ssh2 can do per small file, to tell what Node and ssh2 cost from what
// sluice adds (README, Performance): ssh2's transport and its own SFTP server (not sluice's codec), and
// the file calls of each request, nothing else. Not a server to use: it takes any login, has no chroot,
// no checks, no audit and no limits; it listens on 127.0.0.1 only, and serves what OpenSSH's sftp sends
// for `put -r` and `get -r`.
//
//   node bench/probe/sftp-floor.mjs PORT ROOT MODE HOST_KEY
//
// MODE says what an upload does to the file system:
//   direct  open with the client's flags (O_TRUNC), write, close: OpenSSH's sftp-server's calls
//   atomic  a staged name, renamed over the final one at CLOSE (sluice's uploads.atomic)
//   checks  atomic plus the calls sluice adds for a new file in a directory it keeps open (as
//           ftp-floor.mjs's checks): at OPEN the kept directory's and the name's lstat together and the
//           readlink of the directory; at CLOSE the hold of the target with the staged file's lstat
//           beside its close
// HOST_KEY: a private key file ssh2 can read (sluice's certs/ssh_host_ed25519_key).
import { constants as C, readFileSync } from 'node:fs';
import { lstat, mkdir, open, opendir, rename, stat } from 'node:fs/promises';
import net from 'node:net';
import { join, normalize } from 'node:path';
import ssh2 from 'ssh2';
import { commitChecked, stageChecked } from './floor-checks.mjs';

const [port, root, mode, hostKey] = [Number(process.argv[2]), process.argv[3], process.argv[4], process.argv[5]];
if (!port || !root || !['direct', 'atomic', 'checks'].includes(mode) || !hostKey) {
  console.error('usage: sftp-floor.mjs PORT ROOT direct|atomic|checks HOST_KEY');
  process.exit(2);
}
const { OPEN_MODE, STATUS_CODE } = ssh2.utils.sftp;
let staged = 0;
/** A client's path, under ROOT (no confinement beyond normalize: a probe, not a server). */
const real = (path) => join(root, normalize(`/${path}`));
const attrsOf = (st) => ({ mode: st.mode, uid: st.uid, gid: st.gid, size: st.size, atime: Math.floor(st.atimeMs / 1000), mtime: Math.floor(st.mtimeMs / 1000) });
const longname = (name, st) => `${st.isDirectory() ? 'd' : '-'}rw-r--r--    1 0        0        ${st.size} Jan  1 00:00 ${name}`;

function flagsOf(pflags) {
  let flags = 0;
  if (pflags & OPEN_MODE.READ && pflags & OPEN_MODE.WRITE) flags = C.O_RDWR;
  else if (pflags & OPEN_MODE.WRITE) flags = C.O_WRONLY;
  if (pflags & OPEN_MODE.APPEND) flags |= C.O_APPEND;
  if (pflags & OPEN_MODE.CREAT) flags |= C.O_CREAT;
  if (pflags & OPEN_MODE.TRUNC) flags |= C.O_TRUNC;
  if (pflags & OPEN_MODE.EXCL) flags |= C.O_EXCL;
  return flags;
}

function serve(sftp) {
  // The client's EOF: the channel is closed from this side too, or OpenSSH's sftp waits for it.
  sftp.on('end', () => sftp.end());
  const handles = new Map();
  let next = 0;
  const give = (reqid, entry) => {
    const id = Buffer.alloc(4);
    id.writeUInt32BE(next++);
    handles.set(id.toString('hex'), entry);
    sftp.handle(reqid, id);
  };
  const take = (handle) => handles.get(handle.toString('hex'));
  const fail = (reqid) => (err) => sftp.status(reqid, err?.code === 'ENOENT' ? STATUS_CODE.NO_SUCH_FILE : STATUS_CODE.FAILURE);
  const ok = (reqid) => () => sftp.status(reqid, STATUS_CODE.OK);
  const answerStat = (reqid, how, path) => how(real(path)).then((st) => sftp.attrs(reqid, attrsOf(st)), fail(reqid));

  sftp.on('REALPATH', (reqid, path) => {
    const p = normalize(`/${path}`);
    sftp.name(reqid, [{ filename: p, longname: p, attrs: {} }]);
  });
  sftp.on('STAT', (reqid, path) => answerStat(reqid, stat, path));
  sftp.on('LSTAT', (reqid, path) => answerStat(reqid, lstat, path));
  sftp.on('MKDIR', (reqid, path) => mkdir(real(path)).then(ok(reqid), fail(reqid)));
  sftp.on('SETSTAT', (reqid) => sftp.status(reqid, STATUS_CODE.OK));
  sftp.on('FSETSTAT', (reqid) => sftp.status(reqid, STATUS_CODE.OK));
  sftp.on('OPENDIR', (reqid, path) => opendir(real(path)).then((dir) => give(reqid, { dir, path: real(path) }), fail(reqid)));
  sftp.on('READDIR', async (reqid, handle) => {
    const h = take(handle);
    if (!h?.dir) return sftp.status(reqid, STATUS_CODE.FAILURE);
    const names = [];
    for (let d = await h.dir.read(); d !== null && names.length < 100; d = names.length < 100 ? await h.dir.read() : null) {
      const st = await lstat(join(h.path, d.name));
      names.push({ filename: d.name, longname: longname(d.name, st), attrs: attrsOf(st) });
    }
    if (names.length === 0) sftp.status(reqid, STATUS_CODE.EOF);
    else sftp.name(reqid, names);
  });
  sftp.on('OPEN', async (reqid, path, pflags) => {
    const final = real(path);
    try {
      if (!(pflags & OPEN_MODE.WRITE)) return give(reqid, { fh: await open(final, 'r') });
      if (mode === 'direct') return give(reqid, { fh: await open(final, flagsOf(pflags), 0o644) });
      if (mode === 'checks') {
        const checked = await stageChecked(final);
        return give(reqid, { fh: checked.fh, checked });
      }
      const tmp = join(final, '..', `.floor-${process.pid}-${staged++}`);
      give(reqid, { fh: await open(tmp, 'wx', 0o644), tmp, final });
    } catch (err) {
      fail(reqid)(err);
    }
  });
  sftp.on('WRITE', (reqid, handle, offset, data) => {
    const h = take(handle);
    if (!h?.fh) return sftp.status(reqid, STATUS_CODE.FAILURE);
    h.fh.write(data, 0, data.length, offset).then(ok(reqid), fail(reqid));
  });
  sftp.on('READ', async (reqid, handle, offset, length) => {
    const h = take(handle);
    if (!h?.fh) return sftp.status(reqid, STATUS_CODE.FAILURE);
    const buf = Buffer.allocUnsafe(length);
    const { bytesRead } = await h.fh.read(buf, 0, length, offset);
    if (bytesRead === 0) sftp.status(reqid, STATUS_CODE.EOF);
    else sftp.data(reqid, buf.subarray(0, bytesRead));
  });
  sftp.on('FSTAT', (reqid, handle) => take(handle)?.fh.stat().then((st) => sftp.attrs(reqid, attrsOf(st)), fail(reqid)));
  sftp.on('CLOSE', async (reqid, handle) => {
    const key = handle.toString('hex');
    const h = handles.get(key);
    handles.delete(key);
    try {
      if (h?.dir) await h.dir.close();
      if (h?.checked) await commitChecked(h.checked);
      else if (h?.fh) await h.fh.close();
      if (h?.tmp) await rename(h.tmp, h.final);
      sftp.status(reqid, STATUS_CODE.OK);
    } catch (err) {
      fail(reqid)(err);
    }
  });
}

const ssh = new ssh2.Server({ hostKeys: [readFileSync(hostKey)] }, (client) => {
  client.on('error', () => undefined);
  client.on('authentication', (ctx) => ctx.accept());
  client.on('ready', () =>
    client.on('session', (accept) => accept().on('sftp', (acceptSftp) => serve(acceptSftp()))),
  );
});
// As sluice's: without it each reply after the first of a turn waits for the client's delayed ACK.
net
  .createServer((socket) => {
    socket.setNoDelay(true);
    ssh.injectSocket(socket);
  })
  .listen(port, '127.0.0.1', () => console.log(`sftp floor (${mode}) on 127.0.0.1:${port}, root ${root}`));
// Ctrl-C ends it through exit, so that node's --cpu-prof writes its profile.
process.on('SIGINT', () => process.exit(0));
