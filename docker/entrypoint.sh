#!/bin/sh
# Container entrypoint.
#   (no arguments)        run the daemon with the mounted config
#   -o, --check, -V ...   arguments starting with '-' go to imapbridged
#   imapbridge ...        the admin CLI (talks to the daemon's control socket)
#   anything else         run as a command (sh, imapbridged ...)
set -e

conf=${IMAPBRIDGE_CONFIG:-/etc/imapbridge/imapbridge.conf}

if [ $# -eq 0 ] || [ "${1#-}" != "$1" ]; then
	run_only=0 # -V / -h: no config or datadir needed
	own_conf=0 # a config named on the command line
	for a in "$@"; do
		case $a in
		-V|-h|--help|--version) run_only=1 ;;
		-c) own_conf=1 ;;
		esac
	done
	if [ "$own_conf" = 1 ]; then
		exec /usr/sbin/imapbridged "$@"
	fi
	if [ "$run_only" = 0 ]; then
		if [ ! -r "$conf" ]; then
			echo "imapbridge: no readable config at $conf." >&2
			echo "Mount one: docker run -v \$PWD/imapbridge.conf:$conf:ro ... (with datadir = \"/var/lib/imapbridge\")." >&2
			if [ -f /usr/share/doc/imapbridge/imapbridge.conf.sample ]; then
				echo "A documented sample is in /usr/share/doc/imapbridge/imapbridge.conf.sample." >&2
			fi
			exit 78
		fi
		if [ ! -w /var/lib/imapbridge ]; then
			echo "imapbridge: /var/lib/imapbridge is not writable by uid $(id -u); chown the volume to it." >&2
			exit 1
		fi
	fi
	exec /usr/sbin/imapbridged -c "$conf" "$@"
fi

if [ "$1" = imapbridge ]; then
	shift
	exec /usr/bin/imapbridge -c "$conf" "$@"
fi
exec "$@"
