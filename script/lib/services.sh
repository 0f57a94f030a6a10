# shellcheck shell=bash
# services.sh: the list of services (deploy/local/services.conf) and the
# settings each instance gets.  Needs common.sh.
#
# After services_load: SVC_NAMES, SVC_RPC, SVC_OPS, SVC_COUNT (parallel
# arrays, in file order) and, per instance, svc_instance_name/svc_rpc_port/
# svc_ops_port/svc_events_port.  An instance's event relay (lib/outbox.h)
# publishes on its rpc port + 1000, the services' own default.

SVC_NAMES=()
SVC_RPC=()
SVC_OPS=()
SVC_COUNT=()

# upper NAME: NAME in upper case (catalog -> CATALOG).
upper() { printf '%s\n' "${1^^}"; }

# services_load FILE: reads FILE, applies MALL_INSTANCES_<NAME>, and checks
# that no two instances share a port.
services_load() {
	local file=$1 line name rpc ops count extra lineno=0 var i used=" " p
	[ -f "$file" ] || die "$file not found"
	while IFS= read -r line || [ -n "$line" ]; do
		lineno=$((lineno + 1))
		line=${line%%#*}
		read -r name rpc ops count extra <<<"$line" || true
		[ -n "${name:-}" ] || continue
		if [ -n "${extra:-}" ] || [ -z "${count:-}" ]; then
			die "$file:$lineno: expected \"name rpc-port ops-port instances\""
		fi
		[[ $name =~ ^[a-z][a-z0-9_]*$ ]] || die "$file:$lineno: bad service name \"$name\""
		var=MALL_INSTANCES_$(upper "$name")
		count=${!var:-$count}
		[[ $rpc =~ ^[0-9]+$ && $ops =~ ^[0-9]+$ ]] || die "$file:$lineno: ports must be numbers"
		if ! [[ $count =~ ^[0-9]+$ ]] || [ "$count" -lt 1 ] || [ "$count" -gt 64 ]; then
			die "instances of $name must be 1..64 (got \"$count\"; $file:$lineno or $var)"
		fi
		for ((i = 0; i < count; i++)); do
			for p in $((rpc + i)) $((ops + i)) $((rpc + 1000 + i)); do
				[ "$p" -le 65535 ] || die "$name instance $((i + 1)): port $p is out of range"
				case $used in *" $p "*)
					die "$name instance $((i + 1)) would use port $p, which another service uses; space the ports in $file" ;;
				esac
				used+="$p "
			done
		done
		SVC_NAMES+=("$name")
		SVC_RPC+=("$rpc")
		SVC_OPS+=("$ops")
		SVC_COUNT+=("$count")
	done <"$file"
	[ ${#SVC_NAMES[@]} -gt 0 ] || die "$file lists no service"
}

# svc_instance_name S I: "catalog" for a single instance, else "catalog-I"
# (S: index in SVC_NAMES, I: 1-based instance).
svc_instance_name() {
	if [ "${SVC_COUNT[$1]}" -eq 1 ]; then
		printf '%s\n' "${SVC_NAMES[$1]}"
	else
		printf '%s-%s\n' "${SVC_NAMES[$1]}" "$2"
	fi
}
svc_rpc_port() { printf '%s\n' $((SVC_RPC[$1] + $2 - 1)); }
svc_ops_port() { printf '%s\n' $((SVC_OPS[$1] + $2 - 1)); }
svc_events_port() { printf '%s\n' $((SVC_RPC[$1] + 1000 + $2 - 1)); }

# svc_binary BUILD S: the service's binary in build tree BUILD.
svc_binary() { printf '%s/services/%s/mall-%s\n' "$1" "${SVC_NAMES[$2]}" "${SVC_NAMES[$2]}"; }

# services_export_addrs: exports MALL_<NAME>_ADDRS (every instance's RPC nng
# URL, comma-separated) and MALL_<NAME>_EVENTS_ADDRS (every instance's event
# relay) for each service, so that every process finds its peers and the
# events it consumes.
services_export_addrs() {
	local s i addrs events
	for s in "${!SVC_NAMES[@]}"; do
		addrs=
		events=
		for ((i = 1; i <= SVC_COUNT[s]; i++)); do
			addrs+="${addrs:+,}tcp://127.0.0.1:$(svc_rpc_port "$s" "$i")"
			events+="${events:+,}tcp://127.0.0.1:$(svc_events_port "$s" "$i")"
		done
		export "MALL_$(upper "${SVC_NAMES[$s]}")_ADDRS=$addrs"
		export "MALL_$(upper "${SVC_NAMES[$s]}")_EVENTS_ADDRS=$events"
	done
}
