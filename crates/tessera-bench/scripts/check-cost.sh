#!/usr/bin/env bash
# The cost of Tessera's always-on checks, measured two ways against a build
# without them (`--features tessera/unchecked`):
#
#   check-cost.sh instr [scale]   instructions of every suite workload at one
#                                 thread under callgrind, counted inside the
#                                 workload's timed `run` only (setup such as
#                                 generating the built-in trace is left out);
#                                 exact and repeatable. The default scale is
#                                 the suite's own (1): smaller runs change
#                                 what the caches and quick lists see (trace
#                                 at 0.05 showed no effect of the quick-list
#                                 budget that cost 2 points at scale 1)
#   check-cost.sh time [rounds] [threads] [layouts]
#                                 wall time: the bench suite of both builds,
#                                 alternating, `rounds` times each, for each
#                                 of `layouts` code layouts (default 6).
#                                 Per case and layout, the median over rounds
#                                 of Tessera's time ratio to glibc (measured
#                                 in the same process, so machine drift
#                                 cancels), then checked/unchecked; the cost
#                                 of a case is the geometric mean over the
#                                 layouts. `threads` (default 1) is passed
#                                 to --threads. The layouts are the
#                                 shuffle seeds FIRST_LAYOUT+1.. (env,
#                                 default 0), so a second run can use
#                                 other layouts than the first.
#
# Why layouts: where the linker happens to put each function moves a single
# case's time by several percent either way (loop alignment, branch
# predictor and uop-cache aliasing), so one pair of builds measures its
# layouts as much as its checks: tight x1 spread over 8 points or more
# across the layouts of the same two builds. Each layout relinks both builds with
# lld's `--shuffle-sections` under the same seed (a few seconds; nothing is
# recompiled), and averaging over layouts cancels the layout luck. On a
# 2-core machine the 2- and 4-thread cases also swing by 10% or more from
# run to run, which is why the default is one thread.
#
# Both print the per-case cost and the geometric mean.
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
    scale=${2:-1}
    command -v valgrind >/dev/null || {
        echo "check-cost: valgrind is needed (apt-get install valgrind)" >&2
        exit 1
    }
    build -p tessera-bench --example profile_workload
    count() { # binary workload -> instructions inside the workload's `run`
        # (at one thread the work runs inside it; the pattern must not
        # also match the closures inside `run`, or entering one would
        # toggle collection off again)
        local out
        out=$(mktemp)
        valgrind --tool=callgrind --collect-atstart=no --toggle-collect='*Workload>::run' \
            --callgrind-out-file="$out" "$1" "$2" tessera "$scale" >/dev/null 2>&1
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
    rounds=${2:-3}
    threads=${3:-1}
    layouts=${4:-6}
    first=${FIRST_LAYOUT:-0}
    build -p tessera-bench --bin tessera-bench
    out=$(mktemp -d)
    # One relinked binary per build and layout.
    for l in $(seq 1 "$layouts"); do
        echo "check-cost: linking layout $l/$layouts ..." >&2
        for v in checked unchecked; do
            dir=$checked_dir
            features=()
            if [ $v = unchecked ]; then
                dir=$unchecked_dir
                features=(--features tessera/unchecked)
            fi
            CARGO_TARGET_DIR=$dir cargo rustc -q --release -p tessera-bench --bin tessera-bench "${features[@]}" \
                -- -C "link-arg=-Wl,--shuffle-sections=.text.*=$((first + l))"
            cp "$dir/release/tessera-bench" "$out/bench-$v-$l"
        done
    done
    total=$((rounds * layouts))
    n=0
    for r in $(seq 1 "$rounds"); do
        for l in $(seq 1 "$layouts"); do
            n=$((n + 1))
            echo "check-cost: run $n/$total (round $r, layout $l) ..." >&2
            for v in checked unchecked; do
                "$out/bench-$v-$l" --allocators tessera --no-memory --no-progress \
                    --threads "$threads" --reps 3 --json "$out/$v-$l-$r.json" --svg "$out/chart.svg" >/dev/null
            done
        done
    done
    python3 - "$out" "$rounds" "$layouts" <<'PY'
import json, math, statistics, sys
out, rounds, layouts = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def ratios(v, l):
    per = {}
    for r in range(1, rounds + 1):
        for x in json.load(open(f"{out}/{v}-{l}-{r}.json"))["results"]:
            if x["allocator"] == "tessera":
                per.setdefault((x["workload"], x["threads"]), []).append(x["time_ratio"])
    return {k: statistics.median(v) for k, v in per.items()}
runs = [(ratios("checked", l), ratios("unchecked", l)) for l in range(1, layouts + 1)]
logs, logs_nl = [], []
print(f"{'case':<18} {'cost':>7}   per layout")
for k in sorted(runs[0][0]):
    per = [math.log(c[k] / u[k]) for c, u in runs]
    m = sum(per) / len(per)
    logs.append(m)
    if k[0] != "large":
        logs_nl.append(m)
    cells = " ".join(f"{(math.exp(p) - 1) * 100:+5.1f}" for p in per)
    print(f"{k[0] + ' x' + str(k[1]):<18} {(math.exp(m) - 1) * 100:>+6.1f}%   {cells}")
g = lambda l: (math.exp(sum(l) / len(l)) - 1) * 100
print(f"geomean time cost over {layouts} layouts x {rounds} rounds: {g(logs):+.1f}% "
      f"({g(logs_nl):+.1f}% without large, whose time is page faults)")
PY
    rm -rf "$out"
    # The relinks left shuffled binaries behind: put the ordinary ones back.
    echo "check-cost: relinking the ordinary binaries ..." >&2
    cargo rustc -q --release -p tessera-bench --bin tessera-bench
    CARGO_TARGET_DIR=$unchecked_dir cargo rustc -q --release -p tessera-bench --bin tessera-bench --features tessera/unchecked
    ;;
*)
    echo "usage: $0 instr [scale] | time [rounds] [threads] [layouts]" >&2
    exit 2
    ;;
esac
