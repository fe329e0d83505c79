# shellcheck shell=bash
# setup.sh: installing, building and starting the systems, for bench/run
# (sourced; uses its helpers and variables).

# install_missing installs what this mode needs with apt-get. Package
# scripts must not leave daemons on their default ports (nginx on :80,
# varnishd on :6081, redis on :6379): a policy-rc.d that says "not now"
# covers the install, and anything the packages started anyway is stopped
# by PID.
install_missing() {
	local need=()
	command -v wrk >/dev/null || need+=(wrk)
	command -v redis-server >/dev/null || need+=(redis-server)
	if [ "$mode" = full ]; then
		command -v nginx >/dev/null || need+=(nginx)
		[ -e /usr/lib/nginx/modules/ngx_http_set_misc_module.so ] || need+=(libnginx-mod-http-set-misc)
		command -v varnishd >/dev/null || need+=(varnish)
		command -v redis-benchmark >/dev/null || need+=(redis-tools)
	fi
	[ "${#need[@]}" -eq 0 ] && return
	[ "$(id -u)" = 0 ] || die "missing ${need[*]}: install them with apt-get, or run as root"
	log "installing Debian's ${need[*]}"
	local before policy=/usr/sbin/policy-rc.d created_policy=""
	before=" $(pidof nginx varnishd redis-server 2>/dev/null || true) "
	if [ ! -e "$policy" ]; then
		printf '#!/bin/sh\nexit 101\n' >"$policy"
		chmod +x "$policy"
		created_policy=1
	fi
	local ok=1
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >"$work/apt.log" 2>&1 || ok=""
	if [ -z "$ok" ]; then # the package lists may be missing or stale
		apt-get update -qq >>"$work/apt.log" 2>&1 &&
			DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >>"$work/apt.log" 2>&1 && ok=1
	fi
	[ -n "$created_policy" ] && rm -f "$policy"
	local pid
	for pid in $(pidof nginx varnishd redis-server 2>/dev/null || true); do
		[[ "$before" == *" $pid "* ]] && continue
		log "stopping PID $pid, started by the package install"
		kill -TERM "$pid" 2>/dev/null || true
	done
	[ -n "$ok" ] || { cat "$work/apt.log" >&2; die "apt-get install ${need[*]} failed"; }
}

# build_all builds the binaries into $work and finds out whether this
# userproxy has the in-process tier (the -l1-ttl flag).
build_all() {
	log "building userproxy, fakeupstream, bench/warm, bench/stampede, bench/openloop"
	go build -o "$work/userproxy" ./cmd/userproxy
	go build -o "$work/fakeupstream" ./cmd/fakeupstream
	go build -o "$work/warm" ./bench/warm
	go build -o "$work/stampede" ./bench/stampede
	go build -o "$work/openloop" ./bench/openloop
	has_l1=0
	# Not "-h | grep -q": grep leaves at the first match, the rest of the
	# help then gets SIGPIPE, and under pipefail the test fails at random.
	local help
	help="$("$work/userproxy" -h 2>&1 || true)"
	if [[ "$help" == *-l1-ttl* ]]; then has_l1=1; fi
	if [ "$has_l1" = 0 ]; then log "this userproxy has no -l1-ttl flag: running without the L1 tier only"; fi
}

# print_environment prints what the results depend on, as markdown.
print_environment() {
	local commit
	commit="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
	if [ -n "$(git status --porcelain 2>/dev/null | grep -v '^??' || true)" ]; then commit="$commit (+ uncommitted changes)"; fi
	echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'); mode: $mode, ${duration}s per scenario, wrk -t$THREADS -c$CONNS"
	echo "- machine: $(nproc) CPUs, $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo), $(awk '/^MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo) RAM; load average $(cut -d' ' -f1-3 /proc/loadavg)"
	echo "- versions: $(go version | cut -d' ' -f3), $(redis-server --version | grep -o 'v=[^ ]*' | sed 's/v=/redis /'), wrk $(wrk -v 2>&1 | head -n1 | awk '{print $2}')$(
		[ "$mode" = full ] && printf ', %s, %s' "$(nginx -v 2>&1 | sed 's/.*: //')" "$(varnishd -V 2>&1 | head -n1 | grep -o 'varnish-[0-9.]*')"
	)"
	echo "- userproxy: commit $commit; L1 tier: $([ "$has_l1" = 1 ] && echo "yes (-l1-ttl)" || echo "not in this build")"
	if wants openloop; then
		echo "- open loop: rates $OPEN_RATES/s$([ -n "$open_search" ] && echo " and 80% of where Varnish's p99 passes $((OPEN_P99_LINE / 1000)) ms"), ${OPEN_WARMUP}s lead-in + ${duration}s measured, a fresh block of $OPEN_IDS ids × ${#CREDS[@]} credentials per row, CLK_TCK $CLK_TCK"
	fi
}

# start_common starts the fake upstream and a private redis-server.
start_common() {
	free_port UP_PORT
	start fakeupstream "$work/fakeupstream" -listen "127.0.0.1:$UP_PORT" -latency "$LATENCY" \
		-users "$USERS" -lazy -credentials "$(fake_credentials)"
	wait_port "$UP_PORT" "$last_pid" fakeupstream
	free_port REDIS_PORT
	mkdir -p "$work/redis"
	start redis "$(command -v redis-server)" --bind 127.0.0.1 --port "$REDIS_PORT" --save '' \
		--appendonly no --dir "$work/redis" --protected-mode yes --databases 16
	wait_port "$REDIS_PORT" "$last_pid" redis
	REDIS_PID="$last_pid"
	log "fake upstream on 127.0.0.1:$UP_PORT ($LATENCY), redis-server on 127.0.0.1:$REDIS_PORT"
}

# fake_credentials prints CREDS as fakeupstream -credentials wants them:
# user:password:tenant, each user its own tenant.
fake_credentials() {
	local c out=() i=0
	for c in "${CREDS[@]}"; do
		i=$((i + 1))
		out+=("$c:tenant$i")
	done
	(IFS=,; echo "${out[*]}")
}

# start_nginx starts nginx (proxy_cache) from bench/nginx.conf.in.
start_nginx() {
	local dir="$work/nginx" user_line="" secret
	mkdir -p "$dir/cache"
	free_port NGINX_PORT
	secret="$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
	if [ "$(id -u)" = 0 ]; then
		user_line="user nobody nogroup;"
		chmod 755 "$dir"
		chown nobody:nogroup "$dir/cache"
	fi
	sed -e "s|@USER@|$user_line|" -e "s|@DIR@|$dir|g" -e "s|@UPSTREAM@|127.0.0.1:$UP_PORT|" \
		-e "s|@LISTEN@|127.0.0.1:$NGINX_PORT|" -e "s|@SECRET@|$secret|" \
		"$BENCH_DIR/nginx.conf.in" >"$dir/nginx.conf"
	chmod 600 "$dir/nginx.conf" # it holds the HMAC key; the master reads it as root
	start nginx nginx -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" -g 'daemon off;'
	wait_port "$NGINX_PORT" "$last_pid" nginx
	pid_of["$S_NGINX"]="$last_pid"
	port_of["$S_NGINX"]="$NGINX_PORT"
	log "nginx on 127.0.0.1:$NGINX_PORT"
}

# start_varnish starts varnishd from bench/varnish.vcl.in.
start_varnish() {
	local dir="$work/varnish"
	mkdir -p "$dir"
	chmod 755 "$dir"
	free_port VARNISH_PORT
	sed -e "s|@UPSTREAM_PORT@|$UP_PORT|" "$BENCH_DIR/varnish.vcl.in" >"$dir/default.vcl"
	# -T none: no management port; -s malloc,1g: room for every object of
	# the run, so eviction never decides a result.
	start varnish varnishd -F -a "127.0.0.1:$VARNISH_PORT" -T none -f "$dir/default.vcl" \
		-n "$dir/work" -s malloc,1g
	wait_port "$VARNISH_PORT" "$last_pid" varnish
	pid_of["$S_VARNISH"]="$last_pid"
	port_of["$S_VARNISH"]="$VARNISH_PORT"
	log "Varnish on 127.0.0.1:$VARNISH_PORT"
}

# start_userproxy NAME DB [FLAG...]: userproxy on Redis database DB (each
# instance its own, so one's fills are not the other's hits); NAME says
# whether L1 is on (it starts with $S_UP_L1); FLAGs are added last.
start_userproxy() {
	local name="$1" db="$2" port admin extra=() _
	shift 2
	free_port port
	free_port admin
	[ -e "$work/key-secret" ] || { head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$work/key-secret"; chmod 600 "$work/key-secret"; }
	if [ "$has_l1" = 1 ]; then
		if [[ "$name" == "$S_UP_L1"* ]]; then extra=(-l1-ttl=1s); else extra=(-l1-ttl=0); fi
	fi
	start "userproxy-db$db" "$work/userproxy" -listen "127.0.0.1:$port" -admin-listen "127.0.0.1:$admin" \
		-upstream-url "http://127.0.0.1:$UP_PORT" -redis-url "redis://127.0.0.1:$REDIS_PORT/$db" \
		-key-secret-file "$work/key-secret" -log-level warn -log-format json "${extra[@]}" "$@"
	wait_port "$port" "$last_pid" "userproxy-db$db"
	for _ in $(seq 50); do
		[[ "$(http GET "$admin" /readyz 2>/dev/null || true)" == *'"ok"'* ]] && break
		sleep 0.1
	done
	pid_of["$name"]="$last_pid"
	port_of["$name"]="$port"
	admin_of["$name"]="$admin"
	extra+=("$@")
	log "$name on 127.0.0.1:$port (admin $admin, Redis db $db${extra[*]:+, ${extra[*]}})"
}
