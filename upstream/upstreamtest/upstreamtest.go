// Package upstreamtest starts package fakeupstream's fake of the upstream
// API on an httptest server for tests: NewServer(t, opts) serves it on
// 127.0.0.1 until the test ends.
//
// The fake itself lives in fakeupstream, which imports neither testing nor
// net/http/httptest, so that the production binary can link it for its demo
// mode without linking them. The names below are aliases and thin wrappers
// of fakeupstream's, kept so that tests written against upstreamtest
// compile unchanged; see fakeupstream for what they do.
package upstreamtest

import "github.com/userproxy/userproxy/upstream/fakeupstream"

// Credential is fakeupstream.Credential.
type Credential = fakeupstream.Credential

// Options is fakeupstream.Options.
type Options = fakeupstream.Options

// Handler is fakeupstream.Handler; Server embeds it.
type Handler = fakeupstream.Handler

// Fault is fakeupstream.Fault.
type Fault = fakeupstream.Fault

// Stats is fakeupstream.Stats.
type Stats = fakeupstream.Stats

// The faults, as fakeupstream documents them.
const (
	FaultNone            = fakeupstream.FaultNone
	FaultServerError     = fakeupstream.FaultServerError
	FaultUnavailable     = fakeupstream.FaultUnavailable
	FaultTooManyRequests = fakeupstream.FaultTooManyRequests
	FaultHang            = fakeupstream.FaultHang
	FaultMalformed       = fakeupstream.FaultMalformed
	FaultOversize        = fakeupstream.FaultOversize
	FaultSlowBody        = fakeupstream.FaultSlowBody
	FaultReset           = fakeupstream.FaultReset
)

// OversizeBytes is fakeupstream.OversizeBytes.
const OversizeBytes = fakeupstream.OversizeBytes

// DemoCredentials returns fakeupstream.DemoCredentials().
func DemoCredentials() []Credential { return fakeupstream.DemoCredentials() }

// NewHandler returns fakeupstream.NewHandler(opts).
func NewHandler(opts Options) *Handler { return fakeupstream.NewHandler(opts) }

// ParseFault returns fakeupstream.ParseFault(s).
func ParseFault(s string) (Fault, error) { return fakeupstream.ParseFault(s) }
