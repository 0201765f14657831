"""A stand-in for training: writes metrics.csv (reward per step) and embedding.npy (points
in a few clusters) into --out. Pure Python, so it runs wherever python3 does."""
import argparse
import math
import os
import random
import struct

p = argparse.ArgumentParser()
p.add_argument("--lr", type=float, required=True)
p.add_argument("--out", required=True)
a = p.parse_args()
os.makedirs(a.out, exist_ok=True)
rng = random.Random(int(a.lr * 1000))

with open(os.path.join(a.out, "metrics.csv"), "w") as f:
    f.write("step,reward\n")
    for step in range(1, 101):
        reward = 1 - math.exp(-a.lr * step / 5) + rng.gauss(0, 0.02)
        f.write(f"{step},{reward:.5f}\n")

# 150 points in 8 dimensions around three centres, and a little noise.
centres = [[rng.uniform(-6, 6) for _ in range(8)] for _ in range(3)]
rows = [[c + rng.gauss(0, 0.5) for c in centres[i % 3]] for i in range(150)]
rows += [[rng.uniform(-12, 12) for _ in range(8)] for _ in range(6)]
header = "{'descr': '<f8', 'fortran_order': False, 'shape': (%d, 8), }" % len(rows)
header += " " * (63 - (10 + len(header)) % 64) + "\n"
with open(os.path.join(a.out, "embedding.npy"), "wb") as f:
    f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode())
    for r in rows:
        f.write(struct.pack("<8d", *r))
print(f"trained with lr {a.lr}: {len(rows)} embedded points")
