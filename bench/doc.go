// Package bench is the side-by-side benchmark of userproxy against nginx
// proxy_cache and Varnish: bench/run and its scripts (see README.md), and
// the Go helpers in bench/warm and bench/stampede. bench/capacity and
// bench/pubsub hold the Redis measurements of docs/capacity.md. The package
// itself has no code; its test checks the report that bench/run prints.
package bench
