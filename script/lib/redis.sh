# shellcheck shell=bash
# redis.sh: a Redis server of our own on a loopback port, daemonized, with
# its files in one directory: DIR/redis.pid, DIR/redis.log, and (persistent
# mode only) DIR/appendonlydir.  Needs common.sh.

# redis_ping PORT: true when a Redis on 127.0.0.1:PORT answers PING.
redis_ping() {
	local reply
	reply=$(
		exec 2>/dev/null
		exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 0
		printf 'PING\r\n' >&3
		IFS= read -r -t 2 line <&3 || true
		printf '%s' "${line:-}"
	) || true
	[ "${reply%$'\r'}" = "+PONG" ]
}

# redis_pid DIR: the pid of the Redis of DIR when it runs (else nothing).
redis_pid() {
	local pid
	[ -f "$1/redis.pid" ] || return 0
	pid=$(cat "$1/redis.pid" 2>/dev/null) || return 0
	if [ -n "$pid" ] && pid_cmd_matches "$pid" redis-server; then
		printf '%s\n' "$pid"
	fi
}

# redis_start DIR PORT [persist] [LOGFILE]: starts redis-server on
# 127.0.0.1:PORT and waits until it answers.  "persist" keeps the data in an
# append-only file in DIR (script/server: carts survive restarts); otherwise
# nothing is written to disk.
redis_start() {
	local dir=$1 port=$2 persist=${3:-} log=${4:-$1/redis.log} aof=no deadline
	need_cmd redis-server redis-server
	[ "$persist" = persist ] && aof=yes
	mkdir -p "$dir"
	dir=$(cd -P "$dir" && pwd -P)
	case $log in /*) ;; *) log=$PWD/$log ;; esac
	redis-server --port "$port" --bind 127.0.0.1 --daemonize yes \
		--dir "$dir" --pidfile "$dir/redis.pid" --logfile "$log" \
		--save '' --appendonly "$aof" >/dev/null ||
		die "redis-server could not start on port $port (see $log)"
	deadline=$((SECONDS + 20))
	until redis_ping "$port"; do
		if [ "$SECONDS" -ge "$deadline" ]; then
			show_tail "$log" 20
			die "Redis on port $port did not answer within 20s"
		fi
		sleep 0.05
	done
}

# redis_stop DIR: stops the Redis of DIR (SIGTERM: it syncs its append-only
# file and exits) and waits for it.
redis_stop() {
	local pid
	pid=$(redis_pid "$1")
	[ -n "$pid" ] || return 0
	kill -TERM "$pid" 2>/dev/null || true
	if ! wait_pid_gone "$pid" 15; then
		warn "Redis (pid $pid) did not stop within 15s; killing it"
		kill -KILL "$pid" 2>/dev/null || true
	fi
	rm -f "$1/redis.pid"
}
