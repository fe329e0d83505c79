package metrics

import "github.com/prometheus/client_golang/prometheus"

// L1Stats is a snapshot of the in-process cache tier, in the shape the
// cache package reports it (main adapts).
type L1Stats struct {
	Hits, Misses, Evictions, InvalidationsReceived, Subscribes, LeaseMisses uint64 // cumulative
	Bytes                                                                   uint64
	Entries                                                                 int
	LeaseValid                                                              bool
}

// L1Collector exports the in-process tier's statistics, read on each scrape.
type L1Collector struct {
	stats                                                   func() L1Stats
	hits, misses, evictions, received, subs, bytes, entries *prometheus.Desc
	leaseMisses, leaseValid                                 *prometheus.Desc
}

// NewL1Collector returns a collector that calls stats on each scrape. stats
// must be safe for concurrent use.
func NewL1Collector(stats func() L1Stats) *L1Collector {
	d := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc("userproxy_l1_"+name, help, nil, nil)
	}
	return &L1Collector{
		stats:     stats,
		hits:      d("hits_total", "Lookups answered by the in-process tier without Redis."),
		misses:    d("misses_total", "Lookups the in-process tier could not answer (went to Redis)."),
		evictions: d("evictions_total", "Entries evicted from the in-process tier by its size bound."),
		received:  d("invalidations_received_total", "Invalidation messages applied from the Redis channel."),
		subs:      d("subscriptions_total", "Times the invalidation subscription was (re)established and confirmed by a heartbeat; each flushed the tier."),
		bytes:     d("bytes", "Size of the in-process tier, as counted against -l1-max-bytes."),
		entries:   d("entries", "Entries in the in-process tier (estimate)."),
		leaseMisses: d("lease_misses_total",
			"Misses for which the in-process tier held a fresh entry but no lease (no heartbeat confirmed the invalidation feed within -l1-ttl), so the lookup went to Redis."),
		leaseValid: d("lease_valid",
			"1 while the in-process tier holds a lease (a heartbeat on the invalidation subscription came back within -l1-ttl) and answers lookups; 0 while every lookup goes to Redis."),
	}
}

// Describe implements prometheus.Collector.
func (c *L1Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.hits, c.misses, c.evictions, c.received, c.subs, c.bytes, c.entries, c.leaseMisses, c.leaseValid} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *L1Collector) Collect(ch chan<- prometheus.Metric) {
	s := c.stats()
	counter := func(d *prometheus.Desc, v uint64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v))
	}
	counter(c.hits, s.Hits)
	counter(c.misses, s.Misses)
	counter(c.evictions, s.Evictions)
	counter(c.received, s.InvalidationsReceived)
	counter(c.subs, s.Subscribes)
	counter(c.leaseMisses, s.LeaseMisses)
	ch <- prometheus.MustNewConstMetric(c.bytes, prometheus.GaugeValue, float64(s.Bytes))
	ch <- prometheus.MustNewConstMetric(c.entries, prometheus.GaugeValue, float64(s.Entries))
	valid := 0.0
	if s.LeaseValid {
		valid = 1
	}
	ch <- prometheus.MustNewConstMetric(c.leaseValid, prometheus.GaugeValue, valid)
}
