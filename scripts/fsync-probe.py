#!/usr/bin/env python3
"""Prints every slow fdatasync of an 8 KB write, one every 10 ms, for SECONDS seconds.

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
try:
    while time.time() < end:
        t0 = time.time()
        os.pwrite(fd, block, 0)
        os.fdatasync(fd)
        ms = (time.time() - t0) * 1000
        if ms > threshold_ms:
            stamp = time.strftime("%H:%M:%S", time.gmtime(t0))
            print(f"{stamp}.{int(t0 % 1 * 1000):03d} fdatasync {ms:.1f} ms", flush=True)
        time.sleep(0.01)
finally:
    os.close(fd)
    os.unlink(path)
