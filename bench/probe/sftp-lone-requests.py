"""The round trip of a lone SFTP request from paramiko (Ansible, Fabric, Airflow, pysftp), several servers side by side.

    /usr/bin/python3 bench/probe/sftp-lone-requests.py TARGETS.json [ROUNDS] [PER_ROUND] [nodelay|nagle] [KINDS]

TARGETS.json: a list of {"name", "port", "user", "password" or "key", "file"}; `file` names a
file of at least 32 KiB on that server. Every target gets one connection, opened before the
first request; then each round gives each target (in an order that turns round by round)
PER_ROUND requests of each kind, one at a time, each sent only once the one before it was
answered, as an interactive client does:
  stat    STAT of the file
  read    a 32 KiB READ at offset 0 through a handle kept open
  orc     OPEN, a 32 KiB READ, CLOSE of the file (one sample: the three round trips)
KINDS: a comma-separated subset of them (all by default). Prints per target and kind the median, p90 and mean in ms, then one JSON line of it all.
nodelay (the default) sets TCP_NODELAY on the client's socket, as most SSH clients do; paramiko
itself leaves Nagle on.
"""
import json
import socket
import statistics
import sys
import time
import warnings

# Debian's paramiko imports ciphers that python3-cryptography marks as deprecated, on stderr.
warnings.simplefilter('ignore')
import paramiko  # noqa: E402
from paramiko.sftp import CMD_CLOSE, CMD_OPEN, CMD_READ, SFTP_FLAG_READ  # noqa: E402
from paramiko.sftp_attr import SFTPAttributes  # noqa: E402
from paramiko.py3compat import long  # noqa: E402

KINDS = ('stat', 'read', 'orc')
READ_SIZE = 32768


def connect(t, nodelay):
    sock = socket.create_connection(('127.0.0.1', t['port']))
    if nodelay:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    c = paramiko.SSHClient()
    c.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    login = {'password': t['password']} if 'password' in t else {'key_filename': t['key']}
    c.connect('127.0.0.1', t['port'], username=t['user'], sock=sock, look_for_keys=False, allow_agent=False, timeout=20, **login)
    s = c.open_sftp()
    return c, s


def open_handle(s, path):
    _, msg = s._request(CMD_OPEN, path, SFTP_FLAG_READ, SFTPAttributes())
    return msg.get_binary()


def read(s, handle):
    _, msg = s._request(CMD_READ, handle, long(0), READ_SIZE)  # long: an offset is a uint64
    n = len(msg.get_binary())
    if n != READ_SIZE:
        raise RuntimeError(f'short read: {n}')


def one(kind, s, path, handle):
    t0 = time.perf_counter_ns()
    if kind == 'stat':
        s.stat(path)
    elif kind == 'read':
        read(s, handle)
    else:
        h = open_handle(s, path)
        read(s, h)
        s._request(CMD_CLOSE, h)
    return (time.perf_counter_ns() - t0) / 1e6


def quantile(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def main():
    targets = json.load(open(sys.argv[1]))
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 40
    per_round = int(sys.argv[3]) if len(sys.argv) > 3 else 50
    nodelay = (sys.argv[4] if len(sys.argv) > 4 else 'nodelay') == 'nodelay'
    kinds = sys.argv[5].split(',') if len(sys.argv) > 5 else KINDS
    live = []
    for t in targets:
        c, s = connect(t, nodelay)
        live.append((t, c, s, open_handle(s, t['file'])))
    times = {t['name']: {k: [] for k in kinds} for t in targets}
    # One warm-up round, not counted: the servers' first requests load code and fill caches.
    for t, _, s, h in live:
        for kind in kinds:
            for _ in range(20):
                one(kind, s, t['file'], h)
    for r in range(rounds):
        order = live[r % len(live):] + live[:r % len(live)]
        for t, _, s, h in order:
            for kind in kinds:
                for _ in range(per_round):
                    times[t['name']][kind].append(one(kind, s, t['file'], h))
    out = {}
    for name, by_kind in times.items():
        out[name] = {}
        for kind, xs in by_kind.items():
            stats = {'n': len(xs), 'median': statistics.median(xs), 'p90': quantile(xs, 0.9), 'mean': statistics.fmean(xs)}
            out[name][kind] = stats
            print(f"{name:14} {kind:5} n={stats['n']} median {stats['median']:.3f} ms  p90 {stats['p90']:.3f} ms  mean {stats['mean']:.3f} ms")
    for _, c, _, _ in live:
        c.close()
    print(json.dumps({'client': 'paramiko ' + paramiko.__version__, 'nodelay': nodelay, 'results': out}))


main()
