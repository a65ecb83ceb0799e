#!/bin/sh
# Build the libFuzzer targets with clang and run the IMAP response parser
# fuzzer for N seconds (default 60). New inputs go to build-fuzz/corpus/, the
# committed seeds in tests/fuzz/corpus/imap_parse/ are only read.
# Usage: tests/fuzz/run.sh [seconds] [extra libFuzzer flags...]
set -eu
secs=${1:-60}
[ $# -gt 0 ] && shift
src=$(cd "$(dirname "$0")/../.." && pwd)
build=${IMAPBRIDGE_FUZZ_BUILD:-$src/build-fuzz}
CC=clang cmake -S "$src" -B "$build" -DIMAPBRIDGE_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j2 --target fuzz_imap_parse
mkdir -p "$build/corpus/imap_parse" "$build/artifacts"
cd "$build/artifacts"
exec "$build/fuzz/fuzz_imap_parse" -max_total_time="$secs" -print_final_stats=1 \
	-max_len=4096 -dict="$src/tests/fuzz/imap.dict" "$@" \
	"$build/corpus/imap_parse" "$src/tests/fuzz/corpus/imap_parse"
