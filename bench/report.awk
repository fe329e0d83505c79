# report.awk: prints bench/run's results (tab-separated rows: scenario
# system req/s p50_us p99_us upstream_calls errors rss_kib other_cpu) as one markdown
# table, with ratios to the anchors, then the issue's goals, met or not.
# Variables: latency_ms (the upstream's), has_l1 (1 when the L1 tier ran).

function num(v) { return v != "" && v != "-" }
function ms(us) { return num(us) ? sprintf("%.2f ms", us / 1000) : "-" }
function ratio(a, b) { return num(a) && num(b) && b + 0 > 0 ? sprintf("%.2f×", a / b) : "-" }
function row(scen, sys) { return at[scen SUBSEP sys] }
# versus(i, anchor): "req/s ratio / p99 ratio" of row i to the anchor's row
# in the same scenario.
function versus(i, anchor,   j) {
	j = row(sc[i], anchor)
	if (!j || j == i) return ""
	return ratio(rps[i], rps[j]) " / " ratio(p99[i], p99[j])
}
function verdict(ok) { return ok ? "**met**" : "**not met**" }

{
	n++
	sc[n] = $1; sy[n] = $2; rps[n] = $3; p50[n] = $4; p99[n] = $5
	up[n] = $6; err[n] = $7; rss[n] = $8; other[n] = $9
	at[$1 SUBSEP $2] = n
}

END {
	if (n == 0) { print "no results"; exit 1 }
	print "| scenario | system | req/s | p50 | p99 | upstream calls | errors | RSS | vs nginx (req/s, p99) | vs Varnish (req/s, p99) | vs direct (req/s, p50 added) | CPU used by others |"
	print "|---|---|---:|---:|---:|---:|---:|---:|---|---|---|---:|"
	# Rows in the issue's order of scenarios, systems in run order.
	nord = split("hot hits|cold misses|stampede|reference", order, "|")
	for (o = 1; o <= nord; o++) for (i = 1; i <= n; i++) if (sc[i] == order[o]) {
		direct = ""
		j = row(sc[i], "direct upstream")
		if (sc[i] == "cold misses" && j && j != i)
			direct = ratio(rps[i], rps[j]) " / " sprintf("%+.2f ms", (p50[i] - p50[j]) / 1000)
		printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", sc[i], sy[i],
			num(rps[i]) ? sprintf("%.0f", rps[i]) : "-", ms(p50[i]), ms(p99[i]), up[i], err[i],
			num(rss[i]) ? sprintf("%.0f MiB", rss[i] / 1024) : "-",
			versus(i, "nginx"), versus(i, "Varnish"), direct, num(other[i]) ? other[i] "%" : "-"
	}

	print ""
	print "Goals of issue 18 for these scenarios (ratios from this run; the hot rows are judged on the median of three runs or more):"
	print ""
	l1 = row("hot hits", "userproxy L1+Redis"); v = row("hot hits", "Varnish")
	if (l1 && v)
		printf "- hot hits, L1 on: req/s %.2f× Varnish (goal ≥ 1.2) %s\n", rps[l1] / rps[v], verdict(rps[l1] / rps[v] >= 1.2)
	else if (has_l1 != 1)
		print "- hot hits, L1 on: not measured (this userproxy has no -l1-ttl flag)"
	else
		print "- hot hits, L1 on: not measured (no Varnish in this run)"
	r = row("hot hits", "userproxy Redis only"); g = row("hot hits", "nginx")
	if (r && g)
		printf "- hot hits, Redis only: req/s %.2f× nginx (goal ≥ 0.8) %s\n", rps[r] / rps[g], verdict(rps[r] / rps[g] >= 0.8)
	else
		print "- hot hits, Redis only: not measured (no nginx in this run)"
	split("userproxy L1+Redis|userproxy Redis only", ups, "|")
	for (k = 1; k <= 2; k++) {
		s = row("stampede", ups[k]); d = row("stampede", "direct upstream")
		if (s && d)
			printf "- stampede, %s: %d upstream call(s) (goal 1) %s; p50 %.1f ms, %+.1f ms over direct (goal ≤ +2 ms) %s\n", ups[k],
				up[s], verdict(up[s] == 1), p50[s] / 1000, (p50[s] - p50[d]) / 1000, verdict((p50[s] - p50[d]) / 1000 <= 2)
		else if (s)
			printf "- stampede, %s: %d upstream call(s) (goal 1) %s; p50 not judged (no direct row)\n", ups[k], up[s], verdict(up[s] == 1)
		c = row("cold misses", ups[k]); d = row("cold misses", "direct upstream")
		if (c && d)
			printf "- cold misses, %s: req/s %.3f× direct (goal ≥ 0.98) %s; p50 %+.2f ms (goal ≤ +0.5 ms) %s\n", ups[k],
				rps[c] / rps[d], verdict(rps[c] / rps[d] >= 0.98), (p50[c] - p50[d]) / 1000, verdict((p50[c] - p50[d]) / 1000 <= 0.5)
		h = row("hot hits", ups[k])
		if (h && num(rss[h]))
			printf "- memory, %s: RSS %.0f MiB under the hot load (goal ≤ 64 MiB) %s\n", ups[k], rss[h] / 1024, verdict(rss[h] / 1024 <= 64)
	}
	print "- allocations (goal: 0 per tier hit, ≤ 10 per Redis-read hit): measured by `go test -bench -benchmem`, not here"
}
