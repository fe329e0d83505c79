// Package bench is the side-by-side benchmark of userproxy against nginx
// proxy_cache and Varnish: bench/run and its scripts (see README.md), and
// the Go helpers in bench/warm, bench/stampede and bench/openloop (the
// open-loop client). bench/capacity and bench/pubsub hold the Redis
// measurements of docs/capacity.md. The package itself has no code; its
// tests check the reports that bench/run prints.
package bench
