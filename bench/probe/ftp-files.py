#!/usr/bin/env python3
"""N small files up, then down again, on one FTP control connection (Python's ftplib, PASV), with the
server's CPU for each direction read from /proc (utime + stime of every process given, all threads).

  ftp-files.py PORT USER PASSWORD DIR N [SERVER_PID ...]

Prints one line per direction: files/s, the longest file, and server CPU per file when pids are given,
then each process's share (`split PID:ms ...`): with workers, give the primary's pid and its workers'
(`pgrep -P PRIMARY`) to tell what the primary spends per file from what the serving worker does.
Used beside bench/probe/ftp-floor.mjs (README, Performance); the bench proper is `npm run bench`.
"""
import ftplib
import io
import os
import sys
import time

TICK = os.sysconf('SC_CLK_TCK')


def cpu_seconds(pid):
    with open(f'/proc/{pid}/stat') as f:
        fields = f.read().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime: fields 14 and 15 of stat(5)


def timed(label, n, pids, one):
    cpu0, t0, worst = [cpu_seconds(p) for p in pids], time.perf_counter(), 0.0
    for i in range(n):
        t = time.perf_counter()
        one(i)
        worst = max(worst, time.perf_counter() - t)
    elapsed = time.perf_counter() - t0
    cpu = [cpu_seconds(p) - c for p, c in zip(pids, cpu0)]
    per_file = f' server CPU {sum(cpu) / n * 1000:.2f} ms/file' if pids else ''
    if len(pids) > 1:
        per_file += ' split ' + ' '.join(f'{p}:{c / n * 1000:.2f}' for p, c in zip(pids, cpu))
    print(f'{label} {n} files {elapsed:.3f} s {n / elapsed:.0f} files/s longest {worst * 1000:.1f} ms{per_file}')


def main():
    if len(sys.argv) < 6:
        sys.exit(__doc__)
    port, user, password, directory, n = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
    pids = [int(p) for p in sys.argv[6:]]
    ftp = ftplib.FTP()
    ftp.connect('127.0.0.1', port)
    ftp.login(user, password)
    ftp.mkd(directory)
    body = os.urandom(4096)
    timed('put', n, pids, lambda i: ftp.storbinary(f'STOR {directory}/f{i:04d}', io.BytesIO(body)))
    got = bytearray()

    def get(i):
        got.clear()
        ftp.retrbinary(f'RETR {directory}/f{i:04d}', got.extend)
        if got != body:
            sys.exit(f'{directory}/f{i:04d}: {len(got)} bytes back, not the 4096 sent')

    timed('get', n, pids, get)
    ftp.quit()


main()
