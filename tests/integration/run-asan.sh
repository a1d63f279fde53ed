#!/usr/bin/env bash
# tests/integration/run-asan.sh - the integration suite against berth built with
# AddressSanitizer and UBSan (tests/berth-asan, made by `make check`). Fails if
# a test fails or if any berth process reported a memory error, undefined
# behaviour or a leak at exit. Extra arguments go to pytest.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
: "${BERTH_SRCDIR:=$(cd "$here/../.." && pwd)}"
: "${BERTH_ASAN_BIN:=$BERTH_SRCDIR/tests/berth-asan}"
if [ ! -x "$BERTH_ASAN_BIN" ]; then
	echo "run-asan: BERTH_ASAN_BIN=$BERTH_ASAN_BIN is not an executable" >&2
	exit 1
fi
reports=$(mktemp -d)
trap 'rm -rf "$reports"' EXIT
export ASAN_OPTIONS="log_path=$reports/asan:detect_leaks=1:abort_on_error=0"
export UBSAN_OPTIONS="log_path=$reports/ubsan:print_stacktrace=1:halt_on_error=1"
# Runs against PostgreSQL directly ("direct" parameters) prove nothing about berth: skipped here.
BERTH_BIN="$BERTH_ASAN_BIN" "$here/run" -k "not direct" "$@"
rc=$?
if compgen -G "$reports/*" >/dev/null; then
	for f in "$reports"/*; do
		echo "=== sanitizer report $f"
		head -c 20000 "$f"
	done
	echo "run-asan: sanitizer reports from berth (see above)" >&2
	rc=1
fi
exit "$rc"
