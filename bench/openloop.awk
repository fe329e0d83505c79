# openloop.awk: prints bench/run's open-loop results (tab-separated rows:
# rate system achieved_rps p50_us p99_us p999_us max_us cpu_us_per_req
# redis_cpu_us_per_req rss_kib failed blocked other_cpu note upstream_calls) as one
# markdown table with ratios to Varnish at the same rate, then the goals of
# issue 18, met or not.

function num(v) { return v != "" && v != "-" }
function ms(us) { return num(us) ? sprintf("%.2f ms", us / 1000) : "-" }
function ratio(a, b) { return num(a) && num(b) && b + 0 > 0 ? sprintf("%.2f×", a / b) : "-" }
function verdict(ok) { return ok ? "**met**" : "**not met**" }
# withRedis(i): the row's CPU per request including Redis's, or "-".
function withRedis(i) { return num(cpu[i]) && num(rcpu[i]) ? cpu[i] + rcpu[i] : "-" }

{
	n++
	rate[n] = $1; sy[n] = $2; rps[n] = $3; p50[n] = $4; p99[n] = $5; p999[n] = $6; mx[n] = $7
	cpu[n] = $8; rcpu[n] = $9; rss[n] = $10; failed[n] = $11; blocked[n] = $12; other[n] = $13; note[n] = $14; up[n] = $15
	at[$1 SUBSEP $2] = n
	if (!($1 in seenRate)) { seenRate[$1] = 1; rates[++nr] = $1 + 0 }
}

END {
	if (n == 0) { print "no open-loop results"; exit 1 }
	# Rates in increasing order (insertion sort: a handful).
	for (a = 2; a <= nr; a++) for (b = a; b > 1 && rates[b] < rates[b - 1]; b--) { t = rates[b]; rates[b] = rates[b - 1]; rates[b - 1] = t }
	print "| rate | system | achieved req/s | p50 | p99 | p99.9 | max | CPU µs/req | Redis CPU µs/req | RSS | vs Varnish: CPU (own / with Redis) | vs Varnish: p99 / p99.9 | failed / blocked | upstream calls | CPU used by others |"
	print "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---:|---:|---:|"
	for (k = 1; k <= nr; k++) for (i = 1; i <= n; i++) if (rate[i] + 0 == rates[k]) {
		v = at[rate[i] SUBSEP "Varnish"]
		vs = ""; vl = ""
		if (v && v != i) {
			vs = ratio(cpu[i], cpu[v]) (num(rcpu[i]) ? " / " ratio(withRedis(i), cpu[v]) : "")
			vl = ratio(p99[i], p99[v]) " / " ratio(p999[i], p999[v])
		}
		printf "| %s/s%s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s / %s | %s | %s |\n", rate[i],
			note[i] == "-" ? "" : " (" note[i] ")", sy[i], num(rps[i]) ? sprintf("%.0f", rps[i]) : "-",
			ms(p50[i]), ms(p99[i]), ms(p999[i]), ms(mx[i]), num(cpu[i]) ? sprintf("%.1f", cpu[i]) : "-",
			num(rcpu[i]) ? sprintf("%.1f", rcpu[i]) : "-", num(rss[i]) ? sprintf("%.0f MiB", rss[i] / 1024) : "-",
			vs, vl, failed[i], blocked[i], num(up[i]) ? up[i] : "-", num(other[i]) ? other[i] "%" : "-"
	}

	print ""
	print "Open-loop goals of issue 18 (ratios from this run; CPU is the proxy's own, Redis's is shown beside it):"
	print ""
	goal(500, "userproxy L1+Redis", "tier on", 0.5, 1, 1)
	goal(2000, "userproxy L1+Redis", "tier on", 0.5, 1, 1)
	goal(2000, "userproxy Redis only", "Redis only", 1.0, 1.5, 0)
	goal(6000, "userproxy L1+Redis", "tier on", 0.6, 1, 0)
	worst = 0
	for (i = 1; i <= n; i++) if (sy[i] ~ /^userproxy/ && num(rss[i]) && rss[i] + 0 > worst) { worst = rss[i]; wi = i }
	if (worst > 0)
		printf "- memory: largest userproxy RSS %.0f MiB (%s, %s/s; goal ≤ 64 MiB) %s\n", worst / 1024, sy[wi], rate[wi], verdict(worst / 1024 <= 64)
}

# goal(r, who, label, cpuMax, p99Max, withP999): one goal line for the
# row of who at rate r against Varnish's; nothing when either is missing.
function goal(r, who, label, cpuMax, p99Max, withP999,   i, v, c, p, q, line) {
	i = at[r SUBSEP who]; v = at[r SUBSEP "Varnish"]
	if (!i || !v) return
	c = cpu[i] / cpu[v]; p = p99[i] / p99[v]; q = p999[i] / p999[v]
	line = sprintf("- open loop %d/s, %s: CPU %.2f× Varnish (%.2f× with Redis; goal ≤ %.1f) %s; p99 %.2f× Varnish's (goal ≤ %s) %s",
		r, label, c, withRedis(i) / cpu[v], cpuMax, verdict(c <= cpuMax), p, p99Max, verdict(p <= p99Max))
	if (withP999) line = line sprintf("; p99.9 %.2f× Varnish's (goal ≤ 1) %s", q, verdict(q <= 1))
	print line
}
