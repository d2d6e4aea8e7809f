#!/usr/bin/env python3
"""Prints every slow fdatasync of an 8 KB write, one every 10 ms, for SECONDS seconds, then
the median, p99 and max of all of them.

Run it beside a benchmark to see whether latency stalls line up with the disk:
    python3 scripts/fsync-probe.py 60 /var/lib/postgresql
(the directory should be on the file system that holds Postgres' WAL).
"""
import os
import sys
import time

seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 60
path = os.path.join(sys.argv[2] if len(sys.argv) > 2 else ".", "fsync-probe.tmp")
threshold_ms = 15
fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
block = b"x" * 8192
end = time.time() + seconds
times = []
try:
    while time.time() < end:
        t0 = time.time()
        os.pwrite(fd, block, 0)
        os.fdatasync(fd)
        ms = (time.time() - t0) * 1000
        times.append(ms)
        if ms > threshold_ms:
            stamp = time.strftime("%H:%M:%S", time.gmtime(t0))
            print(f"{stamp}.{int(t0 % 1 * 1000):03d} fdatasync {ms:.1f} ms", flush=True)
        time.sleep(0.01)
finally:
    os.close(fd)
    os.unlink(path)
# The figure a benchmark prints beside its latencies: what one WAL flush costs on this disk.
if times:
    times.sort()
    pick = lambda q: times[min(len(times) - 1, int(q * len(times)))]
    print(f"fdatasync of 8 KB: p50 {pick(0.5):.3f} ms, p99 {pick(0.99):.3f} ms, max {times[-1]:.1f} ms over {len(times)}", flush=True)
