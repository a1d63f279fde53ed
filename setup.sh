#!/usr/bin/env bash
# setup.sh - the two README commands, on a fresh Debian 12 machine, as root:
#   ./setup.sh run     install what is missing, build, run berth (embedded
#                      PostgreSQL when DATABASE_URL is unset)
#   ./setup.sh check   install what is missing, build, run every test
# and the Dockerfile's build stage:
#   ./setup.sh build   install only the build dependencies, build, stop
# All three install and build through the same functions, so the CI run of
# `check` also proves the container build's steps.
# Installs only from Debian's packages and the npm registry.
set -euo pipefail
cd "$(dirname "$0")"
mode=${1:-run}

case "$mode" in
build | run | check) ;;
*) echo "usage: $0 run|check|build" >&2; exit 2 ;;
esac

# What configure and make need (configure requires cmocka too).
BUILD_PKGS="build-essential autoconf automake libtool pkg-config libevent-dev libpq-dev libssl-dev
 libcmocka-dev libidn-dev"
# What run and the tests need besides (groff-base: the man page is checked with groff;
# curl and python3-yaml: test_docs.py runs the image's HEALTHCHECK and reads doc/deploy.md;
# openssl: test_upstream_options.py and test_tls.py make throwaway CAs and certificates).
TEST_PKGS="postgresql-15 postgresql-client-15 postgresql-contrib python3 python3-psycopg
 python3-pytest python3-psycopg-pool python3-asyncpg python3-yaml curl openssl
 libpostgresql-jdbc-java default-jdk-headless pgbouncer passwd util-linux groff-base nodejs npm"

install_packages() {
	local missing=()
	for p in "$@"; do
		# nodejs/npm may come from elsewhere on a prepared machine: a working node is enough.
		if [ "$p" = nodejs ] || [ "$p" = npm ]; then
			command -v "${p/nodejs/node}" >/dev/null 2>&1 && continue
		fi
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
	done
	if [ ${#missing[@]} -gt 0 ]; then
		echo "setup: installing ${missing[*]}"
		apt-get update -qq
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
	fi
}

install_npm_packages() {
	# npm packages for the driver tests: reinstall when the lock file changed.
	for d in tests/node tests/prisma; do
		[ -f "$d/package-lock.json" ] || continue
		if ! cmp -s "$d/package-lock.json" "$d/node_modules/.package-lock.json.installed" 2>/dev/null; then
			echo "setup: installing npm packages for $d"
			(cd "$d" && npm ci --no-audit --no-fund --loglevel=error &&
				cp package-lock.json node_modules/.package-lock.json.installed)
		fi
	done
}

build() {
	if [ ! -f configure ] || [ configure.ac -nt configure ] || [ Makefile.am -nt configure ]; then
		autoreconf -fi >/dev/null
	fi
	if [ ! -f Makefile ] || [ configure -nt Makefile ]; then
		./configure --quiet
	fi
	make -j"$(nproc)" >/dev/null
}

if [ "$mode" = build ]; then
	install_packages $BUILD_PKGS
else
	install_packages $BUILD_PKGS $TEST_PKGS
	install_npm_packages
fi
build
case "$mode" in
build) ;;
run) exec ./scripts/berth-up ;;
check)
	rc=0
	make -j"$(nproc)" check || rc=$?
	[ "$rc" = 0 ] || { [ -f test-suite.log ] && cat test-suite.log; }
	./scripts/test-summary
	exit "$rc"
	;;
esac
