# shellcheck shell=bash
# common.sh: helpers shared by script/*, .ci/run and bench/run: messages, the
# repository root, root detection, loopback ports and waiting for readiness.
# Sourced, never run; every function is safe under `set -euo pipefail`.

# MALL_ROOT: the repository (physical path, as cmake records it).
# shellcheck disable=SC2034 # used by the scripts that source this file
MALL_ROOT=$(cd -P "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)

say() { printf '==> %s\n' "$*" >&2; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die() {
	printf 'error: %s\n' "$*" >&2
	exit 1
}

is_root() { [ "$(id -u)" -eq 0 ]; }

# print_header FILE: the comment block that opens FILE (after the #! line),
# without the "# ": what --help prints.
print_header() {
	awk 'NR == 1 { next } /^#/ { sub(/^# ?/, ""); print; next } { exit }' "$1"
}

# abs_path PATH: PATH made absolute (not resolved), for commands run elsewhere.
abs_path() {
	case $1 in /*) printf '%s\n' "$1" ;; *) printf '%s/%s\n' "$PWD" "$1" ;; esac
}

# need_cmd CMD [PACKAGE]: dies with a hint when CMD is not on PATH.
need_cmd() {
	command -v "$1" >/dev/null 2>&1 ||
		die "$1 not found; install ${2:-$1} (script/bootstrap installs everything)"
}

# port_in_use PORT: true when something listens on PORT (any address).
port_in_use() {
	local port=$1
	if command -v ss >/dev/null 2>&1; then
		[ -n "$(ss -Hltn "( sport = :$port )" 2>/dev/null)" ] && return 0
	fi
	# a connect to loopback also sees listeners on 0.0.0.0
	(exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null
}

# port_owner PORT: "pid/name" of the listener on PORT, when ss can tell.
port_owner() {
	command -v ss >/dev/null 2>&1 || return 0
	ss -Hltnp "( sport = :$1 )" 2>/dev/null | sed -n 's/.*users:((\(.*\))).*/\1/p' | head -n 1
}

# require_port_free PORT WHAT VAR: dies naming WHAT and the variable that
# moves it when PORT is taken.
require_port_free() {
	local port=$1 what=$2 var=$3 owner
	if port_in_use "$port"; then
		owner=$(port_owner "$port")
		die "port $port ($what) is in use by another program${owner:+ ($owner)}; stop it or choose another port with $var=..."
	fi
}

# free_port VAR: sets VAR to a loopback TCP port nobody listens on, chosen at
# random below the kernel's ephemeral range (so outgoing connections cannot
# take it meanwhile) and never one this shell handed out before.
MALL_PORTS_GIVEN=" "
free_port() {
	local low=32768 port tries=0
	if [ -r /proc/sys/net/ipv4/ip_local_port_range ]; then
		read -r low _ </proc/sys/net/ipv4/ip_local_port_range
	fi
	[ "$low" -gt 12000 ] || low=32768
	while :; do
		port=$((10000 + (RANDOM * 32768 + RANDOM) % (low - 10000)))
		case $MALL_PORTS_GIVEN in *" $port "*) continue ;; esac
		if ! port_in_use "$port"; then
			MALL_PORTS_GIVEN+="$port "
			printf -v "$1" '%s' "$port"
			return 0
		fi
		tries=$((tries + 1))
		[ "$tries" -lt 200 ] || die "could not find a free port"
	done
}

# http_status URL: the HTTP status of GET URL, or 000 when nothing answers.
http_status() {
	curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$1" 2>/dev/null || true
}

# wait_http URL TIMEOUT_S [PID]: waits until GET URL answers 200; fails early
# when PID (the process that should answer) is gone.  Returns 1 on failure.
wait_http() {
	local url=$1 timeout=$2 pid=${3:-} deadline code
	deadline=$((SECONDS + timeout))
	while :; do
		code=$(http_status "$url")
		[ "$code" = 200 ] && return 0
		if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
			warn "the process that should answer $url (pid $pid) has exited"
			return 1
		fi
		if [ "$SECONDS" -ge "$deadline" ]; then
			warn "$url did not answer 200 within ${timeout}s (last status $code)"
			return 1
		fi
		sleep 0.1
	done
}

# wait_pid_gone PID TIMEOUT_S: waits until PID (not necessarily our child)
# has exited; returns 1 if it is still there after TIMEOUT_S.
wait_pid_gone() {
	local pid=$1 deadline=$((SECONDS + $2))
	while kill -0 "$pid" 2>/dev/null; do
		[ "$SECONDS" -lt "$deadline" ] || return 1
		sleep 0.1
	done
}

# show_tail FILE [LINES]: prints the end of a log file for an error message.
show_tail() {
	[ -f "$1" ] || return 0
	printf -- '--- last lines of %s ---\n' "$1" >&2
	tail -n "${2:-30}" "$1" >&2 || true
	printf -- '---\n' >&2
}

# pid_cmd_matches PID WORD: true when PID runs a command line containing WORD
# (guards against acting on a recycled pid from a stale pid file).
pid_cmd_matches() {
	local cmd
	[ -r "/proc/$1/cmdline" ] || return 1
	cmd=$(tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null) || return 1
	case $cmd in *"$2"*) return 0 ;; *) return 1 ;; esac
}
