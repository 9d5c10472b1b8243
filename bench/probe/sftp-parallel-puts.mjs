// Small uploads several at once on one SFTP session, as a parallel client sends them over one
// connection (rclone --transfers, lftp mirror --parallel, a FUSE mount written by several programs):
// each file is an OPEN (WRITE|CREAT|TRUNC), one WRITE and a CLOSE, each sent once the one before it is
// answered, IN_FLIGHT files under way at any time. Prints one JSON line: files, seconds, files/s.
//
//   SFTP_PASSWORD=... node bench/probe/sftp-parallel-puts.mjs PORT USER DIR [FILES [SIZE [IN_FLIGHT]]]
//
// DIR is made first (it must not exist; the small-file workloads keep their trees, see bench/README.md).
// Defaults: 400 files of 4096 bytes, 8 in flight. Listens nowhere; connects to 127.0.0.1 only.
import ssh2 from 'ssh2';

const [port, user, dir] = [Number(process.argv[2]), process.argv[3], process.argv[4]];
const [files, size, inFlight] = [Number(process.argv[5] ?? 400), Number(process.argv[6] ?? 4096), Number(process.argv[7] ?? 8)];
const password = process.env.SFTP_PASSWORD;
if (!port || !user || !dir || !password || !(files > 0 && size >= 0 && inFlight > 0)) {
  console.error('usage: SFTP_PASSWORD=... sftp-parallel-puts.mjs PORT USER DIR [FILES [SIZE [IN_FLIGHT]]]');
  process.exit(2);
}

const call = (fn) => new Promise((resolve, reject) => fn((err, v) => (err ? reject(err) : resolve(v))));
const conn = new ssh2.Client();
await new Promise((resolve, reject) => {
  conn.once('ready', resolve).once('error', reject);
  conn.connect({ host: '127.0.0.1', port, username: user, password, readyTimeout: 20_000 });
});
const sftp = await call((cb) => conn.sftp(cb));
await call((cb) => sftp.mkdir(dir, cb));
const data = Buffer.alloc(size, 0x61);

let next = 0;
async function uploader() {
  while (next < files) {
    const name = `${dir}/f${next++}`;
    const handle = await call((cb) => sftp.open(name, 'w', cb));
    if (size > 0) await call((cb) => sftp.write(handle, data, 0, size, 0, cb));
    await call((cb) => sftp.close(handle, cb));
  }
}

const start = process.hrtime.bigint();
await Promise.all(Array.from({ length: inFlight }, uploader));
const seconds = Number(process.hrtime.bigint() - start) / 1e9;
console.log(JSON.stringify({ files, size, inFlight, seconds: Number(seconds.toFixed(3)), filesPerSec: Math.round(files / seconds) }));
conn.end();
