package metrics

import "github.com/prometheus/client_golang/prometheus"

// PoolStats is a snapshot of a connection pool, in the shape go-redis
// reports it. The metrics package does not import go-redis: main adapts.
type PoolStats struct {
	Hits, Misses, Timeouts       uint32 // cumulative
	TotalConns, IdleConns, Stale uint32 // gauges (Stale is cumulative)
}

// PoolCollector exports a connection pool's statistics, read on every scrape.
type PoolCollector struct {
	stats                                      func() PoolStats
	hits, misses, timeouts, total, idle, stale *prometheus.Desc
}

// NewPoolCollector returns a collector that calls stats on each scrape.
// stats must be safe for concurrent use.
func NewPoolCollector(stats func() PoolStats) *PoolCollector {
	d := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc("userproxy_redis_pool_"+name, help, nil, nil)
	}
	return &PoolCollector{
		stats:    stats,
		hits:     d("hits_total", "Times a free connection was found in the Redis pool."),
		misses:   d("misses_total", "Times no free connection was found in the Redis pool."),
		timeouts: d("timeouts_total", "Times waiting for a Redis pool connection timed out."),
		total:    d("connections", "Connections in the Redis pool."),
		idle:     d("idle_connections", "Idle connections in the Redis pool."),
		stale:    d("stale_connections_total", "Stale connections removed from the Redis pool."),
	}
}

// Describe implements prometheus.Collector.
func (c *PoolCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.hits, c.misses, c.timeouts, c.total, c.idle, c.stale} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *PoolCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.stats()
	ch <- prometheus.MustNewConstMetric(c.hits, prometheus.CounterValue, float64(s.Hits))
	ch <- prometheus.MustNewConstMetric(c.misses, prometheus.CounterValue, float64(s.Misses))
	ch <- prometheus.MustNewConstMetric(c.timeouts, prometheus.CounterValue, float64(s.Timeouts))
	ch <- prometheus.MustNewConstMetric(c.total, prometheus.GaugeValue, float64(s.TotalConns))
	ch <- prometheus.MustNewConstMetric(c.idle, prometheus.GaugeValue, float64(s.IdleConns))
	ch <- prometheus.MustNewConstMetric(c.stale, prometheus.CounterValue, float64(s.Stale))
}
