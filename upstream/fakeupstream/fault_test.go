package fakeupstream

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/userproxy/userproxy/internal/testkit"
)

func TestParseFaultRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		want Fault
	}{
		{"none", FaultNone},
		{"500", FaultServerError},
		{"503", FaultUnavailable},
		{"429", FaultTooManyRequests},
		{"hang", FaultHang},
		{"malformed", FaultMalformed},
		{"oversize", FaultOversize},
		{"slow-body", FaultSlowBody},
		{"reset", FaultReset},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseFault(tt.name)
			if err != nil || got != tt.want {
				t.Fatalf("got ParseFault(%q) = %v, %v; want %v, nil", tt.name, got, err, tt.want)
			}
			if s := got.String(); s != tt.name {
				t.Errorf("got String() %q, want %q", s, tt.name)
			}
		})
	}
	for _, bad := range []string{"", "NONE", "502", "slow_body", "hang "} {
		if f, err := ParseFault(bad); err == nil {
			t.Errorf("got ParseFault(%q) = %v, nil; want an error", bad, f)
		}
	}
	if got, want := Fault(99).String(), "Fault(99)"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

// TestFaultResponses covers every fault that answers; hang, slow-body and
// reset have their own tests below.
func TestFaultResponses(t *testing.T) {
	s := newServer(t, Options{})
	c := testkit.HTTPClient(t)
	user1, _ := s.User(demo.Tenant, "1")
	tests := []struct {
		fault          Fault
		wantCode       int
		wantRetryAfter string
		check          func(t *testing.T, body []byte)
	}{
		{FaultNone, http.StatusOK, "", func(t *testing.T, body []byte) {
			if !bytes.Equal(body, user1) {
				t.Errorf("got %q, want user 1's body", body)
			}
		}},
		{FaultServerError, http.StatusInternalServerError, "", wantErrorJSON},
		{FaultUnavailable, http.StatusServiceUnavailable, "7", wantErrorJSON},
		{FaultTooManyRequests, http.StatusTooManyRequests, "3", wantErrorJSON},
		{FaultMalformed, http.StatusOK, "", func(t *testing.T, body []byte) {
			if len(body) == 0 || json.Valid(body) {
				t.Errorf("got body %q, want non-empty invalid JSON", body)
			}
		}},
		{FaultOversize, http.StatusOK, "", func(t *testing.T, body []byte) {
			if len(body) <= OversizeBytes {
				t.Errorf("got %d bytes, want more than %d", len(body), OversizeBytes)
			}
			var arr []map[string]any
			if err := json.Unmarshal(body, &arr); err != nil {
				t.Errorf("got body that is not a JSON array of objects: %v", err)
			}
			if len(body) > OversizeBytes+64<<10 {
				t.Errorf("got %d bytes, want about %d", len(body), OversizeBytes)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.fault.String(), func(t *testing.T) {
			s.SetFault(tt.fault)
			resp, body := get(t, c, s, &demo, "1")
			wantStatus(t, resp, body, tt.wantCode)
			if got := resp.Header.Get("Content-Type"); got != "application/json" {
				t.Errorf("got Content-Type %q, want application/json", got)
			}
			if got := resp.Header.Get("Retry-After"); got != tt.wantRetryAfter {
				t.Errorf("got Retry-After %q, want %q", got, tt.wantRetryAfter)
			}
			tt.check(t, body)
		})
	}
}

func wantErrorJSON(t *testing.T, body []byte) {
	t.Helper()
	var e struct{ Error string }
	if err := json.Unmarshal(body, &e); err != nil || e.Error == "" {
		t.Errorf("got body %q, want a JSON object with a non-empty error", body)
	}
}

func TestFaultsSpareAuthAndWrites(t *testing.T) {
	s := newServer(t, Options{})
	c := testkit.HTTPClient(t)
	s.SetFault(FaultServerError)
	resp, body := get(t, c, s, nil, "1")
	wantStatus(t, resp, body, http.StatusUnauthorized)
	resp, body = do(t, c, http.MethodPut, s.URL+"/api/users/1", &demo, `{"first_name":"Zed"}`)
	wantStatus(t, resp, body, http.StatusOK)
	resp, body = get(t, c, s, &demo, "1")
	wantStatus(t, resp, body, http.StatusInternalServerError)
	if got := s.Requests(); got != 2 {
		t.Errorf("got Requests %d, want 2 (faulted and 401 GETs count)", got)
	}
}

func TestFaultHangReleasesOnClientCancel(t *testing.T) {
	h := NewHandler(Options{})
	entered, released := make(chan struct{}, 1), make(chan struct{}, 1)
	h.testHookHang = func() { entered <- struct{}{} }
	h.testHookHangEnd = func() { released <- struct{}{} }
	s := startServer(t, h)
	s.SetFault(FaultHang)
	c := testkit.HTTPClient(t)

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	errc := make(chan error, 1)
	req := newRequest(t, ctx, http.MethodGet, s.URL+"/api/users/1", &demo, "")
	go func() {
		resp, err := c.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	receive(t, entered, "the request to hang")
	if got := s.Stats().Hanging; got != 1 {
		t.Errorf("got Hanging %d, want 1", got)
	}
	select {
	case err := <-errc:
		t.Fatalf("got an answer (%v) from a hanging upstream, want none", err)
	default:
	}
	cancel()
	if err := receive(t, errc, "the client to return"); !errors.Is(err, context.Canceled) {
		t.Errorf("got error %v, want context.Canceled", err)
	}
	receive(t, released, "the handler to release the request")
	if got := s.Stats().Hanging; got != 0 {
		t.Errorf("got Hanging %d after release, want 0", got)
	}
}

func TestFaultSlowBody(t *testing.T) {
	t.Run("whole body arrives", func(t *testing.T) {
		h := NewHandler(Options{})
		h.slowInterval = time.Millisecond
		s := startServer(t, h)
		s.SetFault(FaultSlowBody)
		c := testkit.HTTPClient(t)
		want, _ := s.User(demo.Tenant, "2")
		resp, body := get(t, c, s, &demo, "2")
		wantStatus(t, resp, body, http.StatusOK)
		if !bytes.Equal(body, want) {
			t.Errorf("got %q, want %q", body, want)
		}
		resp, body = get(t, c, s, &demo, "999")
		wantStatus(t, resp, body, http.StatusNotFound)
	})
	t.Run("headers first, then stalls until cancel", func(t *testing.T) {
		h := NewHandler(Options{})
		h.slowInterval = time.Hour // nothing after the headers
		s := startServer(t, h)
		s.SetFault(FaultSlowBody)
		c := testkit.HTTPClient(t)
		want, _ := s.User(demo.Tenant, "2")
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		resp, err := c.Do(newRequest(t, ctx, http.MethodGet, s.URL+"/api/users/2", &demo, ""))
		if err != nil {
			t.Fatalf("got %v, want headers before the body", err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.ContentLength != int64(len(want)) {
			t.Errorf("got status %d, Content-Length %d; want 200, %d", resp.StatusCode, resp.ContentLength, len(want))
		}
		readErr := make(chan error, 1)
		go func() {
			_, err := io.ReadAll(resp.Body)
			readErr <- err
		}()
		cancel()
		if err := receive(t, readErr, "the body read to fail"); err == nil {
			t.Error("got a complete body, want an error after cancel")
		}
	})
}

func TestFaultReset(t *testing.T) {
	s := newServer(t, Options{})
	s.SetFault(FaultReset)
	// No keep-alive: each attempt is a fresh connection, so the transport
	// does not retry and the count below is exact.
	tr := &http.Transport{DisableKeepAlives: true}
	t.Cleanup(tr.CloseIdleConnections)
	c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	resp, err := c.Do(newRequest(t, t.Context(), http.MethodGet, s.URL+"/api/users/1", &demo, ""))
	if err == nil {
		resp.Body.Close()
		t.Fatalf("got status %d, want a connection error", resp.StatusCode)
	}
	if msg := err.Error(); !strings.Contains(msg, "reset") && !strings.Contains(msg, "EOF") {
		t.Errorf("got error %v, want a reset or EOF", err)
	}
	if got := s.Requests(); got != 1 {
		t.Errorf("got Requests %d, want 1", got)
	}
	// The server keeps serving after a reset.
	s.SetFault(FaultNone)
	resp, body := get(t, testkit.HTTPClient(t), s, &demo, "1")
	wantStatus(t, resp, body, http.StatusOK)
}
