# shellcheck shell=bash
# scenarios.sh: the measured scenarios, for bench/run (sourced). Each
# appends rows to $results, tab-separated:
#   scenario system req/s p50_us p99_us upstream_calls errors rss_kib other_cpu
# with "-" where a value does not apply; other_cpu is the % of all CPUs
# that processes outside the benchmark used during the run.

# caching_systems: the started caches, in table order.
caching_systems() {
	local s
	for s in "$S_NGINX" "$S_VARNISH" "$S_UP_L1" "${variant_systems[@]}" "$S_UP_REDIS"; do
		[ -n "${port_of[$s]-}" ] && echo "$s"
	done
}

# measure SCENARIO SYSTEM PORT RSS_PID SCRIPT ARGS...: one wrk run of
# $duration seconds; samples the RSS of RSS_PID ("" for none) meanwhile.
measure() {
	local scenario="$1" system="$2" port="$3" rss_pid="$4" script="$5"
	shift 5
	local out="$work/wrk-$scenario-$system.log" before after wpid line max=0 v i=0 busy0 ours0 other
	out="${out// /_}"
	before="$(upstream_requests)"
	busy0="$(busy_ticks)"
	ours0="$(our_ticks)"
	wrk -t"$THREADS" -c"$CONNS" -d"${duration}s" --timeout 5s -s "$BENCH_DIR/$script" \
		"http://127.0.0.1:$port" -- "$@" >"$out" 2>&1 &
	wpid=$!
	started+=("$wpid")
	while kill -0 "$wpid" 2>/dev/null && [ "$i" -lt $(((duration + 30) * 4)) ]; do
		if [ -n "$rss_pid" ]; then
			v="$(rss_kib "$rss_pid")"
			[ "$v" -gt "$max" ] && max="$v"
		fi
		sleep 0.25
		i=$((i + 1))
	done
	wait "$wpid" || { cat "$out" >&2; die "wrk failed for $scenario / $system"; }
	unset 'started[-1]' # reaped: its PID is not ours any more
	# CPU the rest of the machine used meanwhile, in % of all CPUs: what
	# else was competing with this run.
	other="$(awk -v b="$(($(busy_ticks) - busy0))" -v o="$(($(our_ticks) - ours0))" -v t="$CLK_TCK" \
		-v n="$NCPU" -v d="$duration" 'BEGIN { v = (b - o) / (t * n * d) * 100; printf "%.0f", v < 0 ? 0 : v }')"
	after="$(upstream_requests)"
	line="$(grep '^RESULT ' "$out" || true)"
	[ -n "$line" ] || { cat "$out" >&2; die "wrk printed no RESULT for $scenario / $system"; }
	[ -n "$rss_pid" ] || max=-
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$scenario" "$system" "$(kv rps "$line")" \
		"$(kv p50_us "$line")" "$(kv p99_us "$line")" "$((after - before))" \
		"$(($(kv errors "$line") + $(kv non2xx "$line")))" "$max" "$other" >>"$results"
	log "$scenario / $system: $(kv rps "$line") req/s, p50 $(kv p50_us "$line") µs, p99 $(kv p99_us "$line") µs, $((after - before)) upstream calls, errors $(kv errors "$line") non-2xx $(kv non2xx "$line"), other processes ${other}% CPU$(gomaxprocs "$system")"
}

# gomaxprocs SYSTEM: for a userproxy, ", GOMAXPROCS n" as it is at the end
# of a run (an A/B with USERPROXY_GOMAXPROCS shows here); else nothing.
gomaxprocs() {
	[ -n "${admin_of[$1]-}" ] || return 0
	http GET "${admin_of[$1]}" /metrics | awk '/^go_sched_gomaxprocs_threads / { printf ", GOMAXPROCS %d", $2 }'
}

# warm SYSTEM [FIRST IDS]: one request for every hot (id, credential) pair
# (ids FIRST..FIRST+IDS-1, by default 1..HOT_IDS), with the upstream's
# latency off so it takes seconds, not minutes; then again until a pass
# reaches the upstream no more (a fill may not have been stored, e.g. when
# Redis was slow), at most 4 passes in all.
warm() {
	local pass before calls=-1
	set_latency 0s
	for pass in 1 2 3 4; do
		before="$(upstream_requests)"
		"$work/warm" -url "http://127.0.0.1:${port_of[$1]}" -first "${2:-1}" -ids "${3:-$HOT_IDS}" \
			-credentials "$creds_csv" -c "$WARM_CONNS" >"$work/warm.log" 2>&1 ||
			{ set_latency "$LATENCY"; cat "$work/warm.log" >&2; die "warming $1 failed"; }
		calls=$(($(upstream_requests) - before))
		log "warm-up $1, pass $pass: $(cat "$work/warm.log"), $calls upstream calls$(cache_errors "$1")"
		[ "$pass" -gt 1 ] && [ "$calls" -eq 0 ] && break
	done
	set_latency "$LATENCY"
	[ "$calls" -eq 0 ] || log "warning: $1 still missed $calls keys on the last warm-up pass"
}

# cache_errors SYSTEM: for a userproxy, ", N cache errors so far" from its
# metrics (a fill that failed to store shows up here); else nothing.
cache_errors() {
	[ -n "${admin_of[$1]-}" ] || return 0
	http GET "${admin_of[$1]}" /metrics | awk '
		/^userproxy_cache_errors_total/ { n += $2; if ($2 > 0) { sub(/.*op="/, "", $1); sub(/".*/, "", $1); ops = ops " " $1 "=" $2 } }
		END { printf ", %d cache errors so far%s", n, ops }'
}

# HOT_PRIME: seconds of unmeasured Zipf load before the measured one
# (bench/run --prime; 0 = none, the measured load starts right after the
# uniform warm-up).
HOT_PRIME="${HOT_PRIME:-3}"

# scenario_hot SYSTEM: warm SYSTEM, prime it with the workload itself,
# then Zipf load on the warm keys. The priming run matters to a bounded
# cache with frequency-based admission (userproxy's tier holds ~17k of the
# 40k keys): after the uniform warm-up it holds whatever came last, and it
# learns the hot set only from the Zipf traffic. Every system gets it
# (none with --prime 0).
scenario_hot() {
	warm "$1"
	if [ "$HOT_PRIME" -gt 0 ]; then
		wrk -t"$THREADS" -c"$CONNS" -d"${HOT_PRIME}s" --timeout 5s -s "$BENCH_DIR/zipf.lua" \
			"http://127.0.0.1:${port_of[$1]}" -- "$HOT_IDS" "$ZIPF_S" "$((SEED + 1000))" "${AUTHS[@]}" >"$work/prime.log" 2>&1 ||
			{ cat "$work/prime.log" >&2; die "priming $1 failed"; }
	fi
	measure "hot hits" "$1" "${port_of[$1]}" "${pid_of[$1]}" zipf.lua "$HOT_IDS" "$ZIPF_S" "$SEED" "${AUTHS[@]}"
}

scenario_hot_all() {
	local s
	while read -r s; do scenario_hot "$s"; done < <(caching_systems)
}

# scenario_cold: every system walks the same cold (id, credential) pairs.
# A first walk straight at the upstream, with its latency off, makes the
# fake build those users, so no measured run pays for that.
scenario_cold() {
	local prime=$(((duration + 1) / 2)) s
	set_latency 0s
	log "priming the fake upstream's cold users (${prime}s)"
	wrk -t"$THREADS" -c"$CONNS" -d"${prime}s" -s "$BENCH_DIR/walk.lua" "http://127.0.0.1:$UP_PORT" \
		-- "$THREADS" "$COLD_FIRST" "$COLD_IDS" "${AUTHS[@]}" >"$work/prime.log" 2>&1 ||
		{ cat "$work/prime.log" >&2; die "priming failed"; }
	set_latency "$LATENCY"
	measure "cold misses" "$S_DIRECT" "$UP_PORT" "" walk.lua "$THREADS" "$COLD_FIRST" "$COLD_IDS" "${AUTHS[@]}"
	while read -r s; do
		measure "cold misses" "$s" "${port_of[$s]}" "" walk.lua "$THREADS" "$COLD_FIRST" "$COLD_IDS" "${AUTHS[@]}"
	done < <(caching_systems)
}

# scenario_stampede: STAMPEDE_N simultaneous requests for one cold key, in
# STAMPEDE_ROUNDS rounds (each on a key of its own) per system, straight at
# the upstream too, for reference. One burst is a single sample whose p50
# moves by several ms from one to the next on these machines, so a row
# reports the median round's p50 and p99, the most upstream calls any round
# made and the errors of all rounds.
scenario_stampede() {
	local k=0 r s port id out p50s p99s calls errors
	while read -r s; do
		port="${port_of[$s]-$UP_PORT}"
		p50s="" p99s="" calls=0 errors=0
		for ((r = 0; r < STAMPEDE_ROUNDS; r++)); do
			id=$((STAMPEDE_FIRST + k))
			k=$((k + 1))
			out="$("$work/stampede" -url "http://127.0.0.1:$port/api/users/$id" -id "$id" \
				-credentials "${CREDS[0]}" -stats "http://127.0.0.1:$UP_PORT/_fake/stats" -n "$STAMPEDE_N")" ||
				die "stampede failed for $s"
			log "stampede / $s, round $((r + 1)): $out"
			p50s+="$(kv p50_ms "$out") " p99s+="$(kv p99_ms "$out") "
			[ "$(kv upstream_calls "$out")" -gt "$calls" ] && calls="$(kv upstream_calls "$out")"
			errors=$((errors + $(kv errors "$out")))
			sleep 0.2 # let the last round's connections close
		done
		printf '%s\t%s\t-\t%s\t%s\t%s\t%s\t-\t-\n' stampede "$s" \
			"$(median_us $p50s)" "$(median_us $p99s)" "$calls" "$errors" >>"$results"
	done < <(echo "$S_DIRECT"; caching_systems)
}

# median_us MS...: the median of the values (milliseconds), in whole µs;
# the lower middle one of an even count.
median_us() {
	printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { printf "%d", v[int((NR + 1) / 2)] * 1000 + 0.5 }'
}

# scenario_redis_reference: the ceiling for a hit that reads Redis — 1 KiB
# GETs over 32 connections, on the same private redis-server (its db 3).
scenario_redis_reference() {
	command -v redis-benchmark >/dev/null || { log "no redis-benchmark: skipping the Redis reference"; return; }
	local csv
	csv="$(redis-benchmark -h 127.0.0.1 -p "$REDIS_PORT" --dbnum 3 -c 32 -n 200000 -d 1024 -t set,get --csv 2>/dev/null)" ||
		{ log "redis-benchmark failed: skipping the Redis reference"; return; }
	awk -F'","|"' -v OFS='\t' '
		/^"test"/ { for (i = 2; i <= NF; i++) col[$i] = i; next }
		/^"GET"/  { print "reference", "redis-server GET 1 KiB, 32 conns", $(col["rps"]),
		            int($(col["p50_latency_ms"]) * 1000), int($(col["p99_latency_ms"]) * 1000), "-", 0, "-", "-" }
	' <<<"$csv" >>"$results"
	log "reference: $(grep '^"GET"' <<<"$csv")"
}
