#!/usr/bin/env bash
# The test command: install dependencies, build with gcc, clang and the
# sanitizers, and run every test. Exits non-zero if any step fails.
#
#   scripts/test.sh                 everything (what CI runs)
#   IB_SKIP_DEPS=1 scripts/test.sh  do not check/install packages
#   IB_JOBS=N / IB_TEST_JOBS=N      build / ctest parallelism
#   IB_SUITE_TIMEOUT=S              ceiling for the full suite (default 3600 s)
#
# Build trees: build/ (gcc, full suite), build-clang/ (compile check),
# build-asan/ (clang + ASan + UBSan, unit tests, then integration tests).
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

JOBS=${IB_JOBS:-$(nproc 2>/dev/null || echo 2)}
TEST_JOBS=${IB_TEST_JOBS:-2}
LOGDIR="$ROOT/build-logs"
rm -rf "$LOGDIR" && mkdir -p "$LOGDIR"

steps=()     # "name|status|seconds|detail"
failed=0

# run_step NAME CMD...: run CMD with its output shown and kept in a log file.
run_step() {
	local name=$1; shift
	local log="$LOGDIR/${name//[^a-zA-Z0-9_-]/_}.log"
	local start=$SECONDS rc
	echo
	echo "==> $name"
	"$@" 2>&1 | tee "$log"
	rc=${PIPESTATUS[0]}
	local took=$((SECONDS - start))
	if [ "$rc" -eq 0 ]; then
		steps+=("$name|ok|$took|")
	else
		steps+=("$name|FAILED (exit $rc)|$took|log: ${log#"$ROOT"/}")
		failed=1
	fi
	return "$rc"
}

skip_step() {
	steps+=("$1|skipped|0|$2")
	failed=1
}

# configure DIR CC [cmake args...]: a fresh cache if DIR was configured with
# another compiler (cc and gcc are the same one), since CMake cannot switch.
configure() {
	local dir=$1 cc=$2; shift 2
	if [ -f "$dir/CMakeCache.txt" ]; then
		local cached
		cached=$(sed -n 's/^CMAKE_C_COMPILER:[A-Z]*=//p' "$dir/CMakeCache.txt")
		if [ -n "$cached" ] && [ "$(realpath "$cached" 2>/dev/null)" != "$(realpath "$(command -v "$cc")")" ]; then
			echo "$dir was configured with $cached; reconfiguring with $cc"
			rm -rf "$dir/CMakeCache.txt" "$dir/CMakeFiles"
		fi
	fi
	CC=$cc cmake -S "$ROOT" -B "$dir" -DCMAKE_C_COMPILER="$cc" "$@"
}

# Tests get failing (nonzero) status under a sanitizer report and print
# a stack; leaks are reported too.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:strict_string_checks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

# How many tests a ctest selection holds, shown in the step name (ctest
# passes a selection of zero tests, so the count makes that visible).
count_tests() {
	ctest --test-dir "$1" -N "${@:2}" 2>/dev/null | sed -n 's/^Total Tests: //p'
}

echo "imapbridge test: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?') on $(uname -srm), $JOBS build jobs"
total_start=$SECONDS

if [ -z "${IB_SKIP_DEPS:-}" ]; then
	run_step "install deps" "$ROOT/scripts/install-deps.sh"
fi

# 1. gcc: the main build, used for the full suite.
gcc_ok=0
if run_step "configure gcc (build/)" configure build gcc; then
	run_step "build gcc" cmake --build build -j"$JOBS" && gcc_ok=1
else
	skip_step "build gcc" "configure failed"
fi

# 2. clang: compile check with the other compiler's warnings.
if run_step "configure clang (build-clang/)" configure build-clang clang; then
	run_step "build clang" cmake --build build-clang -j"$JOBS"
else
	skip_step "build clang" "configure failed"
fi

# 3. ASan + UBSan (clang): unit tests.
asan_ok=0
if run_step "configure asan (build-asan/)" configure build-asan clang \
		-DCMAKE_BUILD_TYPE=Debug -DIMAPBRIDGE_SANITIZE=ON; then
	if run_step "build asan" cmake --build build-asan -j"$JOBS"; then
		asan_ok=1
		n=$(count_tests build-asan -L unit)
		echo "asan: ${n:-0} unit tests"
		rm -f build-asan/Testing/Temporary/LastTestsFailed.log
		run_step "unit tests under asan+ubsan (${n:-0})" \
			timeout --kill-after=30 "${IB_UNIT_TIMEOUT:-1200}" \
			ctest --test-dir build-asan -L unit --output-on-failure -j"$JOBS"
	else
		skip_step "unit tests under asan+ubsan" "build failed"
	fi
else
	skip_step "build asan" "configure failed"
fi

# 4. The whole suite (unit + integration against real Dovecot) on the gcc build.
if [ "$gcc_ok" = 1 ]; then
	n=$(count_tests build)
	rm -f build/Testing/Temporary/LastTestsFailed.log
	# A ceiling for the whole suite, so CI ends well within its 90 minutes
	# even if tests hang (each test also has its own CTest TIMEOUT).
	run_step "full suite in build/ (${n:-0} tests)" \
		timeout --kill-after=30 "${IB_SUITE_TIMEOUT:-3600}" \
		ctest --test-dir build --output-on-failure -j"$TEST_JOBS"
else
	skip_step "full suite in build/" "gcc build failed"
fi

# 5. The integration tests again, on the ASan + UBSan build: only they run
# the daemon's scheduling. Not test_memory: ASan holds freed memory back
# (its quarantine), so a heap that stays flat cannot be seen.
if [ "$asan_ok" = 1 ]; then
	n=$(count_tests build-asan -L integration -E test_memory)
	run_step "integration tests under asan+ubsan (${n:-0})" \
		timeout --kill-after=30 "${IB_SUITE_TIMEOUT:-3600}" \
		ctest --test-dir build-asan -L integration -E test_memory --output-on-failure \
		-j"$TEST_JOBS"
else
	skip_step "integration tests under asan+ubsan" "asan build failed"
fi

total=$((SECONDS - total_start))
echo
echo "==================== summary ===================="
for s in "${steps[@]}"; do
	IFS='|' read -r name status took detail <<<"$s"
	printf '  %-44s %-18s %5ss%s\n' "$name" "$status" "$took" "${detail:+  $detail}"
done
# ctest keeps the names of failed tests; list them so nobody has to scroll.
for dir in build-asan build; do
	f="$dir/Testing/Temporary/LastTestsFailed.log"
	if [ -s "$f" ]; then
		echo "  failed tests in $dir/: $(cut -d: -f2 "$f" | paste -sd' ')"
	fi
done
# The first sanitizer findings, by source location.
if ls "$LOGDIR"/unit_tests_under_asan* >/dev/null 2>&1; then
	grep -hoE '[^ ]+\.c:[0-9]+:[0-9]+: runtime error: .*|ERROR: (Address|Leak)Sanitizer: [^ ]+( on [^ ]+)?' \
		"$LOGDIR"/unit_tests_under_asan* | sed 's|^'"$ROOT"'/||' | sort -u | head -8 |
		sed 's/^/  sanitizer: /'
fi
echo "  total ${total}s; logs in build-logs/"
if [ "$failed" -ne 0 ]; then
	echo "RESULT: FAILED"
	exit 1
fi
echo "RESULT: all passed"
