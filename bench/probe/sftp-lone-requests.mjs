// The round trip of a lone SFTP request from the ssh2 npm client, several servers side by side: the
// same targets, kinds and rounds as sftp-lone-requests.py (paramiko), which says what each means.
//
//   node bench/probe/sftp-lone-requests.mjs TARGETS.json [ROUNDS] [PER_ROUND] [KINDS]
//
// The client's socket has TCP_NODELAY, as most SSH clients set it.
import { readFileSync } from 'node:fs';
import net from 'node:net';
import ssh2 from 'ssh2';

const READ_SIZE = 32768;
const KINDS = ['stat', 'read', 'orc'];
const [file, roundsArg, perRoundArg, kindsArg] = process.argv.slice(2);
if (!file) {
  console.error('usage: sftp-lone-requests.mjs TARGETS.json [ROUNDS] [PER_ROUND] [KINDS]');
  process.exit(2);
}
const targets = JSON.parse(readFileSync(file, 'utf8'));
const rounds = Number(roundsArg ?? 40);
const perRound = Number(perRoundArg ?? 50);
const kinds = kindsArg ? kindsArg.split(',') : KINDS;

function connect(t) {
  return new Promise((resolve, reject) => {
    const sock = net.connect(t.port, '127.0.0.1', () => {
      sock.setNoDelay(true);
      const c = new ssh2.Client();
      c.on('error', reject);
      c.on('ready', () => c.sftp((err, sftp) => (err ? reject(err) : resolve({ c, sftp }))));
      const login = t.password !== undefined ? { password: t.password } : { privateKey: readFileSync(t.key) };
      c.connect({ sock, username: t.user, ...login });
    });
    sock.on('error', reject);
  });
}

const call = (f) => new Promise((resolve, reject) => f((err, x) => (err ? reject(err) : resolve(x))));
const buf = Buffer.alloc(READ_SIZE);

async function read(sftp, handle) {
  const n = await call((cb) => sftp.read(handle, buf, 0, READ_SIZE, 0, cb));
  if (n !== READ_SIZE) throw new Error(`short read: ${n}`);
}

async function one(kind, sftp, path, handle) {
  const t0 = process.hrtime.bigint();
  if (kind === 'stat') await call((cb) => sftp.stat(path, cb));
  else if (kind === 'read') await read(sftp, handle);
  else {
    const h = await call((cb) => sftp.open(path, 'r', cb));
    await read(sftp, h);
    await call((cb) => sftp.close(h, cb));
  }
  return Number(process.hrtime.bigint() - t0) / 1e6;
}

const quantile = (sorted, q) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];

const live = [];
for (const t of targets) {
  const { c, sftp } = await connect(t);
  live.push({ t, c, sftp, handle: await call((cb) => sftp.open(t.file, 'r', cb)) });
}
const times = Object.fromEntries(targets.map((t) => [t.name, Object.fromEntries(kinds.map((k) => [k, []]))]));
// One warm-up round, not counted (see the paramiko probe).
for (const { t, sftp, handle } of live) for (const kind of kinds) for (let i = 0; i < 20; i++) await one(kind, sftp, t.file, handle);
for (let r = 0; r < rounds; r++) {
  const order = [...live.slice(r % live.length), ...live.slice(0, r % live.length)];
  for (const { t, sftp, handle } of order) for (const kind of kinds) for (let i = 0; i < perRound; i++) times[t.name][kind].push(await one(kind, sftp, t.file, handle));
}
const out = {};
for (const [name, byKind] of Object.entries(times)) {
  out[name] = {};
  for (const [kind, xs] of Object.entries(byKind)) {
    const sorted = [...xs].sort((a, b) => a - b);
    const stats = { n: xs.length, median: quantile(sorted, 0.5), p90: quantile(sorted, 0.9), mean: xs.reduce((a, b) => a + b, 0) / xs.length };
    out[name][kind] = stats;
    console.log(`${name.padEnd(14)} ${kind.padEnd(5)} n=${stats.n} median ${stats.median.toFixed(3)} ms  p90 ${stats.p90.toFixed(3)} ms  mean ${stats.mean.toFixed(3)} ms`);
  }
}
for (const { c } of live) c.end();
console.log(JSON.stringify({ client: 'ssh2', nodelay: true, results: out }));
