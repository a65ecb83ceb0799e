#!/bin/sh
# Build a libFuzzer target with clang and run it for N seconds (default 60).
# The target is the IMAP response parser unless FUZZ_TARGET names another
# (imap_lex, maildir_name). New inputs go to build-fuzz/corpus/<target>/; the committed
# seeds in tests/fuzz/corpus/<target>/ are only read. Crash inputs land in
# build-fuzz/artifacts/.
# Usage: [FUZZ_TARGET=imap_lex] tests/fuzz/run.sh [seconds] [extra libFuzzer flags...]
set -eu
secs=${1:-60}
[ $# -gt 0 ] && shift
target=${FUZZ_TARGET:-imap_parse}
src=$(cd "$(dirname "$0")/../.." && pwd)
build=${IMAPBRIDGE_FUZZ_BUILD:-$src/build-fuzz}
CC=clang cmake -S "$src" -B "$build" -DIMAPBRIDGE_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j2 --target "fuzz_$target"
mkdir -p "$build/corpus/$target" "$build/artifacts"
dict=
[ -f "$src/tests/fuzz/$target.dict" ] && dict="-dict=$src/tests/fuzz/$target.dict"
cd "$build/artifacts"
exec "$build/fuzz/fuzz_$target" -max_total_time="$secs" -print_final_stats=1 \
	-max_len=4096 $dict "$@" "$build/corpus/$target" "$src/tests/fuzz/corpus/$target"
