#!/usr/bin/env bash
# Runs every atheris target of this folder (or those named) for a number of executions or seconds
# each, over a scratch copy of its checked-in seed corpus, and prints per target: executions,
# seconds, findings, and how to reproduce each finding. Exit status 1 if anything was found.
#
#   fuzz/python/run.sh --runs N    [target ...] [-- extra libFuzzer flags]
#   fuzz/python/run.sh --seconds S [target ...] [-- extra libFuzzer flags]
#
# Targets: gguf llama2c hf_config safetensors tokenizer_json chat_template. Findings (the input
# that crashed, hung > 10 s or ran out of memory) are kept in $FUZZ_FINDINGS (default
# fuzz/python/findings/). Needs the package installed with its test extra (atheris).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
python=${PYTHON:-python3}
all_targets=(gguf llama2c hf_config safetensors tokenizer_json chat_template)

mode="" amount=""
targets=() extra=()
while [ $# -gt 0 ]; do
    case "$1" in
        --runs) mode=runs amount=$2; shift 2 ;;
        --seconds) mode=seconds amount=$2; shift 2 ;;
        --) shift; extra=("$@"); break ;;
        -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
        *) targets+=("$1"); shift ;;
    esac
done
if [ -z "$mode" ] || ! [[ "$amount" =~ ^[0-9]+$ ]]; then
    echo "usage: $0 --runs N | --seconds S [target ...] [-- libFuzzer flags]" >&2
    exit 2
fi
[ ${#targets[@]} -gt 0 ] || targets=("${all_targets[@]}")

findings_dir=${FUZZ_FINDINGS:-$here/findings}
mkdir -p "$findings_dir"
work=$(mktemp -d "${TMPDIR:-/tmp}/edgert-fuzz-py.XXXXXX")
trap 'rm -rf "$work"' EXIT
export EDGERT_FUZZ_TMP=$work   # the targets' scratch files, removed with $work

command_of() {  # the command line (without libFuzzer flags) of one target
    case "$1" in
        gguf|llama2c|chat_template) echo "$python $here/fuzz_$1.py" ;;
        hf_config|safetensors|tokenizer_json) echo "$python $here/fuzz_hf.py $1" ;;
        *) return 1 ;;
    esac
}

# --runs: in-process, deterministic with -seed (CI). --seconds: libFuzzer's fork mode, which runs
# the target in child processes it restarts, so one input's leftovers (or a library's slow growth
# per tokenizer, ~20 KB in tokenizers 0.23) never add up to the RSS limit over a long run; the
# child is the target script itself (hence the shebang lines and the executable bit).
if [ "$mode" = runs ]; then budget=(-runs="$amount"); else budget=(-max_total_time="$amount" -fork=1); fi
status=0 total=0
printf '%-15s %12s %9s %9s\n' target executions seconds findings
for t in "${targets[@]}"; do
    cmd=$(command_of "$t") || { echo "unknown target $t (known: ${all_targets[*]})" >&2; exit 2; }
    mkdir -p "$work/corpus-$t"
    log="$work/$t.log"
    start=$(date +%s.%N)
    # New inputs go to the scratch corpus (first dir); the checked-in seeds are only read.
    $cmd "${budget[@]}" -print_final_stats=1 -artifact_prefix="$findings_dir/$t-" \
        "${extra[@]}" "$work/corpus-$t" "$here/corpus/$t" >"$log" 2>&1
    rc=$?
    secs=$(echo "$(date +%s.%N) - $start" | bc)
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
    [ -n "$execs" ] || execs=$(grep -o '^#[0-9]*' "$log" | tail -1 | tr -d '#')
    [ -n "$execs" ] || execs=0
    found=$(grep -o "Test unit written to [^ ]*" "$log" | sed 's/Test unit written to //')
    n_found=$(printf '%s' "$found" | grep -c . || true)
    if [ "$rc" -ne 0 ] && [ "$n_found" -eq 0 ]; then n_found=1; fi
    total=$((total + execs))
    printf '%-15s %12s %9.1f %9s\n' "$t" "$execs" "$secs" "$n_found"
    if [ "$n_found" -ne 0 ]; then
        status=1
        echo "---- $t: finding (exit $rc); the end of its log:"
        grep -v '^#[0-9]' "$log" | tail -40 | sed 's/^/    /'
        for f in $found; do
            echo "    reproduce: $cmd $f"
        done
        [ -n "$found" ] || echo "    no input was written; the full log: rerun with the same flags"
    fi
done
printf '%-15s %12s\n' total "$total"
exit $status
