#!/usr/bin/env bash
# fuzz/native/run.sh — builds (cached) and runs every native libFuzzer target, prints each one's
# executions and findings, and exits non-zero on any finding with the command that reproduces it.
#
#   fuzz/native/run.sh --runs N        N executions per target (what CI runs)
#   fuzz/native/run.sh --seconds S     S seconds in total, split evenly over the targets
#                                      (fuzz/run_all.sh --minutes N passes its native share here)
# Other options:
#   --target NAME      only this target (repeatable; NAME is a fuzz_*.cpp file's stem)
#   --build-dir DIR    build tree (default: $EDGERT_FUZZ_BUILD or <repo>/build/fuzz-native); kept
#                      between runs, so rebuilds are incremental and the working corpus
#                      (DIR/corpus/<target>) keeps what earlier runs found
#   --jobs J           build parallelism (default: $CMAKE_BUILD_PARALLEL_LEVEL or 2)
#   --build-only       build the targets and the sanitized native tests (ctest), run nothing
#   --make-seeds       rewrite the generated seeds in fuzz/native/corpus (make_seeds.cpp)
#
# A target is one fuzz_<name>.cpp file here; its checked-in seeds are corpus/fuzz_<name>/ and an
# optional libFuzzer dictionary fuzz_<name>.dict. Limits per execution (a breach is a finding):
# 10 s (-timeout), one allocation of 256 MiB (-malloc_limit_mb; inputs are at most a few hundred
# KB, so docs/security.md's memory bound is far below it), 2 GiB RSS.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
build=${EDGERT_FUZZ_BUILD:-$repo/build/fuzz-native}
jobs=${CMAKE_BUILD_PARALLEL_LEVEL:-2}
runs=""
seconds=""
build_only=0
make_seeds=0
targets=()

usage() { sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
while [ $# -gt 0 ]; do
    case "$1" in
        --runs) runs=$2; shift 2 ;;
        --seconds) seconds=$2; shift 2 ;;
        --target) targets+=("$2"); shift 2 ;;
        --build-dir) build=$2; shift 2 ;;
        --jobs) jobs=$2; shift 2 ;;
        --build-only) build_only=1; shift ;;
        --make-seeds) make_seeds=1; shift ;;
        -h|--help) usage ;;
        *) echo "run.sh: unknown option $1" >&2; usage ;;
    esac
done
if [ -n "$runs" ] && [ -n "$seconds" ]; then echo "run.sh: give --runs or --seconds, not both" >&2; exit 2; fi
if [ -z "$runs" ] && [ -z "$seconds" ] && [ $build_only = 0 ] && [ $make_seeds = 0 ]; then runs=2000; fi

if [ ${#targets[@]} -eq 0 ]; then
    for src in "$here"/fuzz_*.cpp; do targets+=("$(basename "$src" .cpp)"); done
fi

command -v clang++ >/dev/null || { echo "run.sh: clang++ not found (apt-get install clang libclang-rt-dev)" >&2; exit 2; }
if [ ! -f "$build/CMakeCache.txt" ]; then
    generator=()
    command -v ninja >/dev/null && generator=(-G Ninja)
    cmake -S "$here" -B "$build" "${generator[@]}" -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
        -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_FLAGS_RELWITHDEBINFO="-O1 -g" \
        -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g" >"$build.configure.log" 2>&1 \
        || { cat "$build.configure.log" >&2; exit 2; }
fi
build_targets=("${targets[@]}" make_seeds)
[ $build_only = 1 ] && build_targets=(all)
if ! nice cmake --build "$build" -j "$jobs" --target "${build_targets[@]}" >"$build/build.log" 2>&1; then
    tail -n 60 "$build/build.log" >&2
    echo "run.sh: build failed (log: $build/build.log)" >&2
    exit 2
fi
[ $build_only = 1 ] && { echo "built $build"; exit 0; }

if [ $make_seeds = 1 ]; then
    "$build/make_seeds" "$here/corpus"
    echo "seeds written under $here/corpus"
    [ -z "$runs" ] && [ -z "$seconds" ] && exit 0
fi

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
limits=(-timeout=10 -malloc_limit_mb=256 -rss_limit_mb=2048)
per_target=""
[ -n "$seconds" ] && per_target=$(( (seconds + ${#targets[@]} - 1) / ${#targets[@]} ))

total_execs=0
total_findings=0
for t in "${targets[@]}"; do
    exe="$build/$t"
    seeds="$here/corpus/$t"
    work="$build/corpus/$t"
    findings="$build/findings/$t"
    log="$build/logs/$t.log"
    mkdir -p "$seeds" "$work" "$findings" "$(dirname "$log")"
    rm -f "$findings"/*
    args=("${limits[@]}" -print_final_stats=1 -artifact_prefix="$findings/")
    [ -f "$here/$t.dict" ] && args+=(-dict="$here/$t.dict")
    if [ -n "$runs" ]; then args+=(-runs="$runs"); else args+=(-max_total_time="$per_target"); fi
    start=$(date +%s)
    rc=0
    # New coverage goes to the working corpus (the first dir); the checked-in seeds stay as they are.
    "$exe" "${args[@]}" "$work" "$seeds" >"$log" 2>&1 || rc=$?
    secs=$(( $(date +%s) - start ))
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    execs=${execs:-$(sed -n 's/^Done \([0-9]*\) runs.*/\1/p' "$log" | tail -n 1)}
    execs=${execs:-0}
    n_found=$(find "$findings" -type f | wc -l)
    [ "$rc" -ne 0 ] && [ "$n_found" -eq 0 ] && n_found=1  # died without an artifact: still a finding
    printf '%-24s executions %10s  time %5ss  findings %s\n' "$t" "$execs" "$secs" "$n_found"
    total_execs=$(( total_execs + execs ))
    total_findings=$(( total_findings + n_found ))
    if [ "$n_found" -ne 0 ]; then
        echo "---- $t: the end of its log ($log) ----"
        grep -v '^#[0-9]' "$log" | tail -n 40
        for f in "$findings"/*; do
            [ -e "$f" ] || continue
            echo "reproduce:  $exe ${limits[*]} $f"
            echo "minimize:   $exe -minimize_crash=1 -runs=100000 -exact_artifact_path=$f.min $f"
            echo "then add it to the corpus: cp $f.min $seeds/regress-<what-it-tests>"
        done
        [ -z "$(ls -A "$findings")" ] && echo "reproduce:  $exe ${args[*]} $work $seeds  (exit status $rc, no artifact)"
    fi
done
echo "native fuzzing: ${#targets[@]} targets, $total_execs executions, $total_findings findings"
[ "$total_findings" -eq 0 ]
