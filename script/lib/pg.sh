# shellcheck shell=bash
# pg.sh: a PostgreSQL cluster of our own in a directory, on a loopback port:
# throwaway for script/test and bench/run, kept in var/pg by script/server.
#
# A cluster "root" directory holds data/ (PGDATA), run/ (its Unix socket) and
# postgres.log.  It listens on 127.0.0.1 only with trust authentication for
# local and 127.0.0.1 connections: a development cluster nobody else can reach
# (do not copy this setup to a shared host).  The superuser is "postgres".
#
# As root, initdb refuses to run, so the server runs as the postgres user
# (runuser), and the root must be reachable by that user: pg_prepare_root
# moves the data under /var/tmp when the wanted place is not (a repository
# under /root, a 0700 mktemp directory).
#
# Needs common.sh.

# pg_bindir: where initdb/pg_ctl/postgres live (MALL_PG_BINDIR overrides;
# otherwise the newest /usr/lib/postgresql/*/bin, else PATH).
pg_bindir() {
	if [ -n "${MALL_PG_BINDIR:-}" ]; then
		printf '%s\n' "$MALL_PG_BINDIR"
		return 0
	fi
	local d best=
	for d in /usr/lib/postgresql/*/bin; do
		[ -x "$d/initdb" ] || continue
		if [ -z "$best" ] || [ "${d//[!0-9]/}" -gt "${best//[!0-9]/}" ]; then best=$d; fi
	done
	if [ -z "$best" ] && command -v initdb >/dev/null 2>&1; then
		best=$(dirname "$(command -v initdb)")
	fi
	[ -n "$best" ] || die "PostgreSQL server binaries (initdb) not found; install postgresql (script/bootstrap does)"
	printf '%s\n' "$best"
}

# pg_as_owner CMD...: runs CMD as the cluster's owner (postgres when root),
# from / so that an unreachable working directory does not matter.
pg_as_owner() {
	if is_root; then
		(cd / && runuser -u postgres -- "$@")
	else
		(cd / && "$@")
	fi
}

# pg_reachable DIR: true when the cluster owner can reach DIR.
pg_reachable() {
	if is_root; then
		runuser -u postgres -- test -x "$1" 2>/dev/null
	else
		test -x "$1"
	fi
}

# pg_prepare_root WANTED: sets PG_ROOT to the directory to keep the cluster
# in: WANTED itself when the cluster owner can reach it, otherwise (root only)
# a directory under /var/tmp owned by postgres, with WANTED made a symbolic
# link to it so that the next run finds it again.
pg_prepare_root() {
	local wanted parent target
	wanted=$(abs_path "$1")
	parent=$(dirname "$wanted")
	mkdir -p "$parent"
	if [ -L "$wanted" ]; then
		target=$(readlink "$wanted")
		if [ -d "$target" ] && pg_reachable "$target"; then
			PG_ROOT=$target
			return 0
		fi
		say "$wanted points at $target, which is gone; making a new cluster"
		rm -f "$wanted"
	fi
	if ! is_root; then
		mkdir -p "$wanted"
		chmod 700 "$wanted"
		PG_ROOT=$(cd -P "$wanted" && pwd -P)
		return 0
	fi
	id postgres >/dev/null 2>&1 ||
		die "user postgres does not exist; install postgresql (script/bootstrap does)"
	if pg_reachable "$parent"; then
		mkdir -p "$wanted"
		PG_ROOT=$(cd -P "$wanted" && pwd -P)
	else
		PG_ROOT=$(mktemp -d "${MALL_PG_TMP:-/var/tmp}/mall-pg.XXXXXXXX")
		ln -s "$PG_ROOT" "$wanted"
		printf '%s\n' \
			"The PostgreSQL cluster of $wanted lives in $PG_ROOT:" \
			"the postgres user cannot reach $parent, and PostgreSQL refuses to run as root." \
			"Remove both to start afresh." >"$wanted.README"
		say "postgres cannot reach $parent: keeping the cluster in $PG_ROOT ($wanted links to it)"
	fi
	chown postgres: "$PG_ROOT"
	chmod 700 "$PG_ROOT"
}

# pg_initialized ROOT: true when ROOT holds an initialized cluster.
pg_initialized() {
	pg_as_owner test -f "$(abs_path "$1")/data/PG_VERSION" 2>/dev/null
}

# pg_init ROOT [fast]: initdb into ROOT/data unless done already.  "fast"
# turns off fsync (throwaway clusters: tests, never data you keep).
pg_init() {
	local root fast=${2:-} bin sockdir conf
	root=$(abs_path "$1")
	pg_initialized "$root" && return 0
	bin=$(pg_bindir)
	pg_as_owner mkdir -p "$root/run"
	pg_as_owner chmod 700 "$root/run"
	pg_as_owner "$bin/initdb" -D "$root/data" -U postgres --auth=trust -E UTF8 \
		--locale=C.UTF-8 >"$root/initdb.log" 2>&1 || {
		show_tail "$root/initdb.log" 40
		die "initdb failed for $root/data"
	}
	# A Unix socket path is limited to 107 bytes: without room, TCP only.
	sockdir=$root/run
	[ "${#sockdir}" -le 90 ] || sockdir=
	conf="
# added by script/lib/pg.sh: loopback only, socket inside the cluster root
listen_addresses = '127.0.0.1'
unix_socket_directories = '$sockdir'
max_connections = 200
"
	if [ "$fast" = fast ]; then
		conf+="fsync = off
synchronous_commit = off
full_page_writes = off
"
	fi
	printf '%s' "$conf" | pg_as_owner tee -a "$root/data/postgresql.conf" >/dev/null
	printf '%s\n' \
		"# added by script/lib/pg.sh: trust on loopback only (a development cluster)" \
		"local all all trust" \
		"host all all 127.0.0.1/32 trust" | pg_as_owner tee "$root/data/pg_hba.conf" >/dev/null
}

# pg_running ROOT: true when the cluster in ROOT runs.
pg_running() {
	pg_as_owner "$(pg_bindir)/pg_ctl" -D "$(abs_path "$1")/data" status >/dev/null 2>&1
}

# pg_start ROOT PORT: starts the cluster on 127.0.0.1:PORT and waits for it.
pg_start() {
	local root port=$2
	root=$(abs_path "$1")
	pg_as_owner "$(pg_bindir)/pg_ctl" -D "$root/data" -l "$root/postgres.log" \
		-o "-p $port" -w -t 60 start >/dev/null || {
		show_tail "$root/postgres.log" 30
		die "PostgreSQL in $root/data did not start on port $port"
	}
}

# pg_stop ROOT: stops the cluster (fast shutdown) if it runs.
pg_stop() {
	local root
	root=$(abs_path "$1")
	pg_running "$root" || return 0
	pg_as_owner "$(pg_bindir)/pg_ctl" -D "$root/data" -m fast -w -t 60 stop >/dev/null ||
		warn "could not stop PostgreSQL in $root/data"
}

# pg_port_of ROOT: the port a running cluster listens on (from postmaster.pid).
pg_port_of() {
	pg_as_owner sed -n 4p "$(abs_path "$1")/data/postmaster.pid" 2>/dev/null
}

# pg_psql PORT DB ARGS...: psql as the superuser, quiet, stopping at errors.
pg_psql() {
	local port=$1 db=$2
	shift 2
	psql -X -q -At -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U postgres -d "$db" "$@"
}

# pg_create_service_db PORT SERVICE: creates role and database mall_SERVICE
# (both idempotent) with per-service isolation: only its role (and the
# superuser) may connect, and nobody may connect to postgres/template1 but
# the superuser.  pg_trgm is a trusted extension (PostgreSQL 13+), so the
# owner creates it in its migrations; where it is not trusted, it is created
# here as the superuser.
pg_create_service_db() {
	local port=$1 name=mall_$2 trusted
	case $2 in *[!a-z0-9_]* | '') die "bad service name \"$2\" (use a-z, 0-9, _)" ;; esac
	pg_psql "$port" postgres <<SQL
SELECT format('CREATE ROLE %I LOGIN', '$name')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$name') \gexec
SELECT format('CREATE DATABASE %I OWNER %I', '$name', '$name')
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '$name') \gexec
REVOKE CONNECT, TEMPORARY ON DATABASE "$name" FROM PUBLIC;
REVOKE CONNECT ON DATABASE postgres FROM PUBLIC;
REVOKE CONNECT ON DATABASE template1 FROM PUBLIC;
SQL
	trusted=$(pg_psql "$port" postgres -c \
		"SELECT trusted FROM pg_available_extension_versions v JOIN pg_available_extensions e USING (name)
		  WHERE name = 'pg_trgm' AND v.version = e.default_version")
	case $trusted in
	t) ;;
	f) pg_psql "$port" "$name" -c "CREATE EXTENSION IF NOT EXISTS pg_trgm" ;;
	*) die "the pg_trgm extension is not available; install postgresql-contrib" ;;
	esac
}
