#!/usr/bin/env bash
# The cost of Tessera's always-on checks, measured two ways against a build
# without them (`--features tessera/unchecked`):
#
#   check-cost.sh instr [scale]   instructions of every suite workload at one
#                                 thread under callgrind (exact, repeatable)
#   check-cost.sh time [rounds] [threads]
#                                 wall time: the bench suite of both builds,
#                                 alternating, `rounds` times each; per case the
#                                 median over rounds of Tessera's time ratio to
#                                 glibc (measured in the same process, so machine
#                                 drift cancels), then checked/unchecked.
#                                 `threads` (default 1,2,4) is passed to
#                                 --threads: on a 2-core machine the 2- and
#                                 4-thread cases swing by +-10% between runs of
#                                 the same binaries, so `time 11 1` is the
#                                 steadier measure there
#
# Both print the per-workload cost and the geometric mean.
set -euo pipefail
cd "$(dirname "$0")/../../.."
mode=${1:-instr}
checked_dir=target
unchecked_dir=target/unchecked

build() { # package target...
    echo "check-cost: building with and without the checks ..." >&2
    cargo build -q --release "$@"
    CARGO_TARGET_DIR=$unchecked_dir cargo build -q --release "$@" --features tessera/unchecked
}

case $mode in
instr)
    scale=${2:-0.05}
    command -v valgrind >/dev/null || {
        echo "check-cost: valgrind is needed (apt-get install valgrind)" >&2
        exit 1
    }
    build -p tessera-bench --example profile_workload
    count() { # binary workload -> instructions of the whole run (workloads run
        # in spawned threads, so there is no single function to toggle on)
        local out
        out=$(mktemp)
        valgrind --tool=callgrind --callgrind-out-file="$out" "$1" "$2" tessera "$scale" >/dev/null 2>&1
        callgrind_annotate "$out" 2>/dev/null | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1; exit }'
        rm -f "$out"
    }
    rows=()
    for w in larson cache-thrash cache-scratch xmalloc tight churn realloc large trace; do
        echo "check-cost: $w ..." >&2
        rows+=("$w $(count $checked_dir/release/examples/profile_workload "$w") $(count $unchecked_dir/release/examples/profile_workload "$w")")
    done
    printf '%s\n' "${rows[@]}" | python3 -c '
import math, sys
logs = []
print("%-14s %13s %13s %8s" % ("workload", "checked", "unchecked", "cost"))
for line in sys.stdin:
    w, c, u = line.split()
    r = int(c) / int(u)
    logs.append(math.log(r))
    print(f"{w:<14} {int(c):>13,} {int(u):>13,} {(r - 1) * 100:>+7.1f}%")
print(f"geomean instruction cost: {(math.exp(sum(logs) / len(logs)) - 1) * 100:+.1f}%")
'
    ;;
time)
    rounds=${2:-5}
    threads=${3:-1,2,4}
    build -p tessera-bench --bin tessera-bench
    out=$(mktemp -d)
    for r in $(seq 1 "$rounds"); do
        for v in checked unchecked; do
            dir=$checked_dir
            [ $v = unchecked ] && dir=$unchecked_dir
            echo "check-cost: round $r/$rounds, $v ..." >&2
            "$dir/release/tessera-bench" --allocators tessera --no-memory --no-progress \
                --threads "$threads" --reps 3 --json "$out/$v-$r.json" --svg "$out/$v-$r.svg" >/dev/null
        done
    done
    python3 - "$out" "$rounds" <<'PY'
import json, math, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
def ratios(v):
    per = {}
    for r in range(1, rounds + 1):
        for x in json.load(open(f"{out}/{v}-{r}.json"))["results"]:
            if x["allocator"] == "tessera":
                per.setdefault((x["workload"], x["threads"]), []).append(x["time_ratio"])
    return {k: statistics.median(v) for k, v in per.items()}
c, u = ratios("checked"), ratios("unchecked")
logs, logs_nl = [], []
print(f"{'case':<20} {'checked/glibc':>13} {'unchecked/glibc':>15} {'cost':>8}")
for k in sorted(c):
    r = c[k] / u[k]
    logs.append(math.log(r))
    if k[0] != "large":
        logs_nl.append(math.log(r))
    print(f"{k[0] + ' x' + str(k[1]):<20} {c[k]:>13.3f} {u[k]:>15.3f} {(r - 1) * 100:>+7.1f}%")
g = lambda l: (math.exp(sum(l) / len(l)) - 1) * 100
print(f"geomean time cost: {g(logs):+.1f}% ({g(logs_nl):+.1f}% without large, whose time is page faults)")
PY
    rm -rf "$out"
    ;;
*)
    echo "usage: $0 instr [scale] | time [rounds] [threads]" >&2
    exit 2
    ;;
esac
