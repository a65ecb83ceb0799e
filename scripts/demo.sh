#!/usr/bin/env bash
# The demo command: install dependencies, build, then run scripts/demo.py:
# a private Dovecot with sample mail, a config, and imapbridged syncing it
# into a Maildir. Everything lands in one directory, printed at the end.
#
#   scripts/demo.sh                   build and run (waits for Ctrl-C on a terminal)
#   scripts/demo.sh --no-wait         stop everything when done
#   scripts/demo.sh --tls starttls    other options: scripts/demo.py --help
#   IB_SKIP_DEPS=1 scripts/demo.sh    do not check/install packages
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

if [ -z "${IB_SKIP_DEPS:-}" ]; then
	"$ROOT/scripts/install-deps.sh"
fi

echo "==> building into build/"
cmake -S "$ROOT" -B "$ROOT/build" >/dev/null
if ! cmake --build "$ROOT/build" -j"$(nproc 2>/dev/null || echo 2)" --target imapbridged imapbridge >"$ROOT/build/demo-build.log" 2>&1; then
	tail -40 "$ROOT/build/demo-build.log"
	echo "demo: build failed; full log in build/demo-build.log" >&2
	exit 1
fi

exec python3 "$ROOT/scripts/demo.py" --bin "$ROOT/build/bin" "$@"
