#!/bin/sh
# Benchmark entry point: installs the peers if missing, builds imapbridge with
# optimisation in build-bench/, then runs run.py with the given arguments.
#   tests/bench/run.sh --preset seed
#   tests/bench/run.sh --preset small --repeat 1
#   tests/bench/run.sh --scaling
# Needs root (the private Dovecot runs mail as 'nobody'). Not part of CTest.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build="$root/build-bench"

missing=""
command -v mbsync >/dev/null 2>&1 || missing="$missing isync"
command -v offlineimap >/dev/null 2>&1 || missing="$missing offlineimap"
[ -x /usr/bin/time ] || missing="$missing time"
command -v dovecot >/dev/null 2>&1 || [ -x /usr/sbin/dovecot ] || missing="$missing dovecot-imapd"
if [ -n "$missing" ]; then
	echo "bench: installing$missing" >&2
	if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing; } >&2; then
		echo "bench: could not install$missing; the run reports those tools as n/a" >&2
	fi
fi

# A broken build must not stop the peers' numbers: imapbridge then shows as n/a.
mkdir -p "$build"
log="$build/bench-build.log"
if cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >"$log" 2>&1 &&
	cmake --build "$build" -j"$(nproc)" --target imapbridged >>"$log" 2>&1; then
	echo "bench: imapbridged built in $build" >&2
else
	echo "bench: building imapbridged failed (see $log); continuing without it" >&2
fi

IMAPBRIDGE_BIN="$build/bin" exec python3 "$here/run.py" "$@"
