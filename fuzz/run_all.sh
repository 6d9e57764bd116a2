#!/usr/bin/env bash
# Deeper fuzzing: every Python (atheris) target and, when fuzz/native/run.sh exists, every native
# (libFuzzer) target, for about N minutes in total. Prints each target's executions and findings,
# and for each finding the command that reproduces it. Exit status 1 if anything was found.
#
#   fuzz/run_all.sh --minutes N
#
# The time is split evenly between the Python targets and the native run (all of it goes to the
# Python targets when there is no fuzz/native/run.sh). Python findings are kept under
# fuzz/python/findings/ (the native run says where it keeps its own).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
minutes=""
while [ $# -gt 0 ]; do
    case "$1" in
        --minutes) minutes=$2; shift 2 ;;
        -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
        *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
done
if ! [[ "$minutes" =~ ^[0-9]+$ ]] || [ "$minutes" -lt 1 ]; then
    echo "usage: $0 --minutes N" >&2
    exit 2
fi
python_targets=6
total=$((minutes * 60))
native=""
[ -x "$here/native/run.sh" ] && native="$here/native/run.sh"
if [ -n "$native" ]; then py_seconds=$((total / 2)); else py_seconds=$total; fi
per_target=$((py_seconds / python_targets))
[ "$per_target" -ge 1 ] || per_target=1

status=0
echo "== Python targets (atheris), ${per_target} s each"
"$here/python/run.sh" --seconds "$per_target" || status=1
if [ -n "$native" ]; then
    echo "== native targets (libFuzzer), $((total - py_seconds)) s in all"
    "$native" --seconds "$((total - py_seconds))" || status=1
else
    echo "== native targets: fuzz/native/run.sh not found; Python targets only"
fi
if [ "$status" -eq 0 ]; then echo "no findings"; else echo "FINDINGS: see the reproduce lines above"; fi
exit $status
