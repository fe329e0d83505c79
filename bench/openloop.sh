# shellcheck shell=bash
# openloop.sh: the open-loop scenario, for bench/run (sourced). Each
# system, at each fixed rate, gets bench/openloop's requests on schedule
# whether or not earlier ones have been answered; rows go to $ol_results,
# tab-separated:
#   rate system achieved_rps p50_us p99_us p999_us max_us cpu_us_per_req
#   redis_cpu_us_per_req rss_kib failed blocked other_cpu note upstream_calls
# with "-" where a value does not apply. failed counts transport errors and
# non-200 answers; blocked counts sends that waited for a free worker
# (their wait is in the latency); other_cpu is the % of all CPUs that
# processes outside the benchmark used meanwhile; note marks the extra rate;
# upstream_calls are the fake's GETs during the run (lead-in included),
# which must be 0 for a hit run.

# The hot set: 2,000 users × the 4 credentials (8,000 keys, well inside
# the tier's 16 MiB). Each row of a system gets a fresh block of ids,
# 130001..132000, then 132001..134000 and so on (between the cold walk's
# and the stampede's ranges): an entry lives 60 s (54 s at the least with
# userproxy's jitter) and one rate for every system takes about a minute,
# so a block reused by the next row would expire during it and the row
# would measure refreshes, not hits. A first version that re-warmed ids
# 1..2000 before every row saw 7,000 upstream calls in a 2,000/s row.
# Expired blocks leave the tier, so it holds two blocks at most.
OPEN_BASE=130001
OPEN_IDS=2000
OPEN_LAST=199999
OPEN_WARMUP=2     # seconds at the rate before the measured window
OPEN_P99_LINE=5000 # µs: the extra rate is 80% of where Varnish's p99 passes this
OPEN_PROBE=3      # seconds per probe of that search

# openloop_measure RATE SYSTEM SECONDS [NOTE]: warm SYSTEM's next block of
# ids (see OPEN_BASE), then one run of bench/openloop on it; appends a row to
# $ol_results unless NOTE is "probe", and keeps the RESULT line in
# last_result.
openloop_measure() {
	local rate="$1" system="$2" secs="$3" note="${4:--}" out line watch=() busy0 ours0 t0 t1 other redis_cpu calls first
	first=$((OPEN_BASE + ${open_rows[$system]:-0} * OPEN_IDS))
	open_rows[$system]=$((${open_rows[$system]:-0} + 1))
	[ $((first + OPEN_IDS - 1)) -le "$OPEN_LAST" ] || die "open loop: out of fresh ids for $system (more than $(((OPEN_LAST - OPEN_BASE + 1) / OPEN_IDS)) rows)"
	warm "$system" "$first" "$OPEN_IDS"
	calls="$(upstream_requests)"
	out="$work/openloop-$rate-${system// /_}.log"
	watch=(-watch "proxy=${pid_of[$system]}")
	[ -n "${admin_of[$system]-}" ] && watch+=(-watch "redis=$REDIS_PID")
	busy0="$(busy_ticks)" ours0="$(our_ticks)" t0="$EPOCHREALTIME"
	"$work/openloop" -url "http://127.0.0.1:${port_of[$system]}" -rate "$rate" -duration "${secs}s" \
		-warmup "${OPEN_WARMUP}s" -first "$first" -ids "$OPEN_IDS" -credentials "$creds_csv" \
		-seed "$SEED" -clk-tck "$CLK_TCK" "${watch[@]}" >"$out" 2>&1 ||
		{ cat "$out" >&2; die "openloop failed for $system at $rate/s"; }
	t1="$EPOCHREALTIME"
	calls=$(($(upstream_requests) - calls))
	other="$(awk -v b="$(($(busy_ticks) - busy0))" -v o="$(($(our_ticks) - ours0))" -v t="$CLK_TCK" \
		-v n="$NCPU" -v d="$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')" \
		'BEGIN { v = (b - o) / (t * n * d) * 100; printf "%.0f", v < 0 ? 0 : v }')"
	line="$(grep '^RESULT ' "$out" || true)"
	[ -n "$line" ] || { cat "$out" >&2; die "openloop printed no RESULT for $system at $rate/s"; }
	redis_cpu="$(kv cpu_us_per_req_redis "$line" || true)" # none for nginx and Varnish
	log "open loop $rate/s / $system: $(kv achieved_rps "$line") req/s, p50 $(kv p50_us "$line") p99 $(kv p99_us "$line") p99.9 $(kv p999_us "$line") max $(kv max_us "$line") µs (from send: p99 $(kv svc_p99_us "$line")), CPU $(kv cpu_us_per_req_proxy "$line") µs/req${redis_cpu:+ + Redis $redis_cpu}, RSS $(kv rss_kib_proxy "$line") KiB, $calls upstream calls, failed $(($(kv errors "$line") + $(kv non200 "$line"))), client CPU $(kv cpu_us_per_req_client "$line") µs/req, blocked $(kv blocked "$line"), workers $(kv workers "$line"), other processes ${other}% CPU"
	[ "$note" = probe ] || printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$rate" "$system" \
		"$(kv achieved_rps "$line")" "$(kv p50_us "$line")" "$(kv p99_us "$line")" "$(kv p999_us "$line")" \
		"$(kv max_us "$line")" "$(kv cpu_us_per_req_proxy "$line")" "${redis_cpu:--}" "$(kv rss_kib_proxy "$line")" \
		"$(($(kv errors "$line") + $(kv non200 "$line")))" "$(kv blocked "$line")" "$other" "$note" "$calls" >>"$ol_results"
	last_result="$line"
}

# scenario_openloop SYSTEM...: every rate of $OPEN_RATES for every system (rate by rate, so one rate's rows are
# measured minutes apart at most), then, when Varnish is among them and
# $open_search is set, the extra rate.
declare -A open_rows # by system: rows measured so far, so blocks of ids used

scenario_openloop() {
	local s rate
	for rate in ${OPEN_RATES//,/ }; do
		for s in "$@"; do openloop_measure "$rate" "$s" "$duration"; done
	done
	[ -n "$open_search" ] || return 0
	if ! openloop_search_varnish; then
		log "open loop: no extra rate: $open_why"
		return 0
	fi
	log "open loop: Varnish's p99 passed $((OPEN_P99_LINE / 1000)) ms at $open_knee/s; the extra rate is $open_extra/s"
	for s in "$@"; do openloop_measure "$open_extra" "$s" "$duration" "80% of $open_knee/s"; done
}

# openloop_search_varnish sets open_extra to 80% of the lowest rate at which Varnish's
# p99 was seen above $OPEN_P99_LINE: the fixed rates bracket it, then four
# bisection probes of $OPEN_PROBE seconds narrow it to within 1/16 of the
# bracket. If Varnish's p99 stays under the line, it tries 1.5× the highest
# rate, up to six times (on a quiet 2-core box Varnish stayed under 5 ms
# at 30,500/s, the fourth step); if it is over the line at the lowest rate,
# half of that, twice. It sets open_knee to the rate it found, or fails with the reason
# in open_why when no bracket is found. The p99 of a 3 s probe is noisy: the search is cheap, not
# precise, and the log lists every probe.
openloop_search_varnish() {
	local lo=0 hi=0 r p99 step
	while IFS=$'\t' read -r r p99; do
		if [ "$p99" -gt "$OPEN_P99_LINE" ]; then
			{ [ "$hi" = 0 ] || [ "$r" -lt "$hi" ]; } && hi="$r"
		fi
	done < <(awk -F'\t' -v s="$S_VARNISH" '$2 == s && $14 == "-" { print $1 "\t" $5 }' "$ol_results")
	while IFS=$'\t' read -r r p99; do
		[ "$p99" -le "$OPEN_P99_LINE" ] && { [ "$hi" = 0 ] || [ "$r" -lt "$hi" ]; } && [ "$r" -gt "$lo" ] && lo="$r"
	done < <(awk -F'\t' -v s="$S_VARNISH" '$2 == s && $14 == "-" { print $1 "\t" $5 }' "$ol_results")
	for step in 1 2 3 4 5 6; do
		[ "$hi" = 0 ] || break
		r=$(((lo * 3 / 2 + 50) / 100 * 100))
		openloop_measure "$r" "$S_VARNISH" "$OPEN_PROBE" probe
		p99="$(kv p99_us "$last_result")"
		if [ "$p99" -gt "$OPEN_P99_LINE" ]; then hi="$r"; else lo="$r"; fi
	done
	[ "$hi" != 0 ] || { open_why="Varnish's p99 stayed under $((OPEN_P99_LINE / 1000)) ms up to $lo/s"; return 1; }
	for step in 1 2; do
		[ "$lo" = 0 ] || break
		r=$(((hi / 2 + 50) / 100 * 100))
		openloop_measure "$r" "$S_VARNISH" "$OPEN_PROBE" probe
		p99="$(kv p99_us "$last_result")"
		if [ "$p99" -gt "$OPEN_P99_LINE" ]; then hi="$r"; else lo="$r"; fi
	done
	[ "$lo" != 0 ] || { open_why="Varnish's p99 was over $((OPEN_P99_LINE / 1000)) ms already at $hi/s"; return 1; }
	for step in 1 2 3 4; do
		r=$((((lo + hi) / 2 + 50) / 100 * 100))
		{ [ "$r" -le "$lo" ] || [ "$r" -ge "$hi" ]; } && break
		openloop_measure "$r" "$S_VARNISH" "$OPEN_PROBE" probe
		p99="$(kv p99_us "$last_result")"
		if [ "$p99" -gt "$OPEN_P99_LINE" ]; then hi="$r"; else lo="$r"; fi
	done
	open_knee="$hi"
	open_extra=$(((hi * 8 / 10 + 5) / 10 * 10))
}
