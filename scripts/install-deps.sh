#!/usr/bin/env bash
# Install what imapbridge needs to build and test, on Debian 12.
#
# Idempotent: packages already installed are left alone, and apt is not
# touched at all when nothing is missing. The Dovecot system service that
# dovecot-imapd would start is kept off: the tests and the demo run private
# Dovecot instances on free loopback ports and need 143/993 left alone.
set -euo pipefail

PACKAGES=(
	build-essential cmake pkg-config clang libclang-rt-14-dev
	libssl-dev libev-dev liblmdb-dev lmdb-utils libconfig-dev zlib1g-dev libcrypt-dev
	dovecot-imapd isync offlineimap mutt python3 openssl procps
)

missing=()
for p in "${PACKAGES[@]}"; do
	status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
	[ "$status" = installed ] || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
	echo "install-deps: all ${#PACKAGES[@]} packages already installed"
	exit 0
fi

echo "install-deps: installing ${missing[*]}"
SUDO=
if [ "$(id -u)" -ne 0 ]; then
	if command -v sudo >/dev/null 2>&1; then
		SUDO=sudo
	else
		echo "install-deps: missing packages and not root; run as root: apt-get install ${missing[*]}" >&2
		exit 1
	fi
fi
if ! command -v apt-get >/dev/null 2>&1; then
	echo "install-deps: no apt-get here; install by hand: ${missing[*]}" >&2
	exit 1
fi

# Keep maintainer scripts from starting services (Dovecot above all) while
# we install. Only a policy-rc.d we created ourselves is removed afterwards.
policy=/usr/sbin/policy-rc.d
own_policy=0
if [ ! -e "$policy" ]; then
	printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
	$SUDO chmod 755 "$policy"
	own_policy=1
fi
cleanup() {
	if [ "$own_policy" = 1 ]; then
		$SUDO rm -f "$policy"
	fi
}
trap cleanup EXIT

export DEBIAN_FRONTEND=noninteractive
# Quiet on success; on failure show what apt said.
log=$(mktemp /tmp/install-deps.XXXXXX.log)
if ! { $SUDO apt-get update -qq &&
	$SUDO apt-get install -y -qq --no-install-recommends -o Dpkg::Use-Pty=0 "${missing[@]}"; } \
	>"$log" 2>&1; then
	tail -30 "$log" >&2
	echo "install-deps: apt-get failed; full output in $log" >&2
	exit 1
fi
rm -f "$log"

# If the Dovecot service is (or was already) set to run, stop and disable it:
# it would hold 143/993 and nothing here uses the system instance.
if [ -e /lib/systemd/system/dovecot.service ] || [ -e /etc/init.d/dovecot ]; then
	if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
		$SUDO systemctl disable --now dovecot.service dovecot.socket >/dev/null 2>&1 || true
	else
		$SUDO update-rc.d dovecot disable >/dev/null 2>&1 || true
		if [ -s /run/dovecot/master.pid ]; then
			$SUDO service dovecot stop >/dev/null 2>&1 || true
		fi
	fi
fi
echo "install-deps: done"
