#!/usr/bin/env python3
# Opens and closes N existing files through a mount (each open is a first open): open+close
# rate per round. Usage: bench/open_bench.py DIR N
import os, sys, time
d = sys.argv[1]; n = int(sys.argv[2])
os.makedirs(d, exist_ok=True)
for i in range(n):
    os.close(os.open(f"{d}/f{i}", os.O_CREAT | os.O_WRONLY, 0o644))

for r in range(3):
    t = time.perf_counter()
    for i in range(n):
        os.close(os.open(f"{d}/f{i}", os.O_RDONLY))
    dt = time.perf_counter() - t
    print(f"round {r}: {n/dt:.0f} open+close/s ({dt/n*1e6:.1f} us)")
