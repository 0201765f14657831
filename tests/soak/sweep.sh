#!/usr/bin/env bash
# The two-worker sweep, N times in a row (default 20), each on a fresh home, as a user runs it:
# `plotter2 up --workers 2`, push a code bundle, a five-way sweep with --wait, every run must
# succeed and one output must come back. Stops at the first failure and keeps its home.
#
#   tests/soak/sweep.sh [N]        # PLOTTER2=target/debug/plotter2 to test a debug build
set -euo pipefail
bin=$(realpath "${PLOTTER2:-target/release/plotter2}")
n=${1:-20}
for i in $(seq 1 "$n"); do
  home=$(mktemp -d /tmp/p2-soak.XXXXXX)
  mkdir "$home/code"
  cat > "$home/code/train.py" <<'PY'
import argparse, os
p = argparse.ArgumentParser(); p.add_argument("--lr"); p.add_argument("--out")
a = p.parse_args()
os.makedirs(a.out, exist_ok=True)
open(os.path.join(a.out, "weights.csv"), "w").write(f"lr,{a.lr}\n")
print("trained with lr", a.lr)
PY
  cat > "$home/code/manifest.json" <<'JSON'
{"manifest_version": 1, "meta": {"address": "/sources/tali/experiment2"},
 "contains": {"package": {"tasks": {"train": {"kind": "command",
   "run": ["python3", "train.py", "--lr", "{lr}", "--out", "{out}"], "params": {"lr": 0.1}}}}}}
JSON
  : > "$home/up.log"
  "$bin" up --home "$home/h" --workers 2 > "$home/up.log" 2>&1 &
  up=$!
  stop() { kill "$up" 2>/dev/null || true; wait "$up" 2>/dev/null || true; }
  fail() { echo "round $i FAILED: $1 (home kept: $home)"; stop; exit 1; }
  for _ in $(seq 1 600); do
    grep -q '^ready' "$home/up.log" && break
    kill -0 "$up" 2>/dev/null || fail "up exited: $(tail -5 "$home/up.log")"
    sleep 0.1
  done
  grep -q '^ready' "$home/up.log" || fail "up not ready after 60 s"
  p2() { "$bin" --home "$home/h" "$@"; }
  p2 push "$home/code" /sources/tali/experiment2 > /dev/null || fail "push"
  out=$(p2 run /sources/tali/experiment2 train --sweep lr=0.1,0.2,0.15,0.05,0.01 --wait 2>&1) \
    || fail "sweep: $out"
  ok=$(p2 runs /sources/tali/experiment2 --json | python3 -c '
import json, sys
runs = json.load(sys.stdin)
runs = runs.get("runs", runs) if isinstance(runs, dict) else runs
print(sum(1 for r in runs if r["state"] == "succeeded"))')
  [ "$ok" = 5 ] || fail "$ok of 5 runs succeeded: $out"
  got=$(p2 get '/sources/tali/experiment2/sweep-1/lr=0.05@latest:weights.csv') || fail "get"
  [ "$got" = "lr,0.05" ] || fail "get printed $got"
  stop
  rm -rf "$home"
  echo "round $i ok"
done
echo "$n rounds: every run succeeded"
