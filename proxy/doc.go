// Package proxy is userproxy's HTTP face: the fasthttp front the binary
// listens with (Front) and the net/http Handler, each of which turns a
// GET|HEAD /api/users/{id} into a readthrough.Request, asks the engine, and
// renders its Outcome once. Around that it holds what both fronts share:
// id validation, the request id and trace context, the access log, writes
// that invalidate, pass-through of everything else, and the admin and
// purge endpoints. It decides nothing about caching.
package proxy
