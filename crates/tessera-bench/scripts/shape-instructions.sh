#!/usr/bin/env bash
# Instructions per operation of the shapes, through the same door as
# `tessera-bench shapes` (LD_PRELOAD; glibc: none), counted by callgrind:
# exact and independent of the machine's load, unlike time on a shared box.
#
#   crates/tessera-bench/scripts/shape-instructions.sh                 # tight sh6 xmalloc larson, scale 0.02
#   SHAPES="tight sh8" SCALE=0.05 crates/tessera-bench/scripts/shape-instructions.sh
#   ALLOCATORS="glibc tessera old=/tmp/libtessera-main.so" crates/tessera-bench/scripts/shape-instructions.sh
#
# Each shape child runs twice under callgrind, at SCALE and at SCALE/4; the
# difference of the two processes' instruction counts divided by the
# difference of the malloc/free pairs they report is the cost of one more
# pair, in every thread, with everything that does not grow with the work
# (start-up, exit, thread set-up) cancelled out. The loop's own work
# (random sizes, stamping and checking blocks) is in every allocator's
# figure alike: compare differences, or ratios to glibc. Threads run one
# at a time under valgrind, so threaded shapes count the instructions of
# one interleaving (no contention, no waiting).
# Needs valgrind; builds tessera-bench and libtessera.so (release) first.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
shapes=${SHAPES:-"tight sh6 xmalloc larson"}
scale=${SCALE:-0.02}
allocators=${ALLOCATORS:-"glibc tessera mimalloc jemalloc tcmalloc"}
cores=${CORES:-$(nproc)}

command -v valgrind >/dev/null || { echo "needs valgrind (apt-get install -y valgrind)" >&2; exit 1; }
(cd "$root" && cargo build --release -q -p tessera-bench -p tessera-capi)
bench=$target/release/tessera-bench

lib_of() {
    local dir
    dir=/usr/lib/$(uname -m)-linux-gnu
    case "$1" in
        glibc) echo "" ;;
        tessera) echo "$target/release/libtessera.so" ;;
        mimalloc) echo "$dir/libmimalloc.so.2" ;;
        jemalloc) echo "$dir/libjemalloc.so.2" ;;
        tcmalloc) echo "$dir/libtcmalloc_minimal.so.4" ;;
        *=*) echo "${1#*=}" ;;
        *) echo "unknown allocator $1" >&2; exit 2 ;;
    esac
}

threads_of() {
    "$bench" shapes --list --cores "$cores" --no-build 2>/dev/null |
        awk -v s="$1" '$1 == s { print $2 }'
}

work=$(mktemp -d "${TMPDIR:-/tmp}/shape-instr.XXXXXX")
trap 'rm -rf "$work"' EXIT

printf '%-14s %4s' shape thr
for a in $allocators; do printf ' %14s' "${a%%=*}"; done
printf '   (instructions per malloc+free pair; in brackets: ratio to the first column)\n'
for s in $shapes; do
    t=$(threads_of "$s")
    [ -n "$t" ] || { echo "unknown shape $s" >&2; exit 2; }
    printf '%-14s %4s' "$s" "$t"
    base=""
    for a in $allocators; do
        lib=$(lib_of "$a")
        if [ -n "$lib" ] && [ ! -f "$lib" ]; then printf ' %14s' "missing"; continue; fi
        out=$work/$s.${a%%=*}
        ok=1
        for k in hi lo; do
            sc=$scale
            [ "$k" = lo ] && sc=$(awk -v s="$scale" 'BEGIN { print s / 4 }')
            LD_PRELOAD=$lib valgrind --tool=callgrind --callgrind-out-file="$out.$k.cg" \
                "$bench" --shape-child "$s" "$t" "$sc" >"$out.$k.txt" 2>"$out.$k.err" || ok=0
        done
        [ "$ok" = 1 ] || { printf ' %14s' "failed"; continue; }
        ops_hi=$(grep -o 'ops=[0-9]*' "$out.hi.txt" | cut -d= -f2)
        ops_lo=$(grep -o 'ops=[0-9]*' "$out.lo.txt" | cut -d= -f2)
        ir_hi=$(awk '/^(summary|totals):/ { print $2; exit }' "$out.hi.cg")
        ir_lo=$(awk '/^(summary|totals):/ { print $2; exit }' "$out.lo.cg")
        per=$(awk -v a="$ir_hi" -v b="$ir_lo" -v c="$ops_hi" -v d="$ops_lo" \
            'BEGIN { printf "%.1f", (a - b) / (c - d) }')
        if [ -z "$base" ]; then base=$per; fi
        printf ' %14s' "$per ($(awk -v p="$per" -v b="$base" 'BEGIN { printf "%.2f", p / b }'))"
    done
    printf '\n'
done
echo "(scales $scale and $scale/4, $cores cores; instructions of every thread, per extra pair)"
