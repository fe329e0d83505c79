package main

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/userproxy/userproxy/internal/testkit"
	"github.com/userproxy/userproxy/upstream/fakeupstream"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// TestServeShutsDownWithHungRequest checks that a cancelled context ends
// serve promptly even while a FaultHang request is in flight.
func TestServeShutsDownWithHungRequest(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := fakeupstream.NewHandler(fakeupstream.Options{Users: 3})
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	served := make(chan error, 1)
	go func() { served <- serve(ctx, ln, h) }()

	c := testkit.HTTPClient(t)
	url := "http://" + ln.Addr().String() + "/api/users/1"
	demo := fakeupstream.DemoCredentials()[0]
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth(demo.Username, demo.Password)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("got status %d, want 200", resp.StatusCode)
	}

	h.SetFault(fakeupstream.FaultHang)
	hung := make(chan error, 1)
	go func() {
		resp, err := c.Do(req.Clone(context.Background()))
		if err == nil {
			resp.Body.Close()
		}
		hung <- err
	}()
	// Wait until the request is held by the handler, via its own stats.
	testkit.WaitFor(t, 10*time.Second, "the request to hang", func() bool {
		select {
		case err := <-hung:
			t.Fatalf("got hung request ended early: %v", err)
		default:
		}
		return h.Stats().Hanging > 0
	})
	cancel()
	if err := testkit.Receive(t, 5*time.Second, "serve to return after cancel with a hung request", served); err != nil {
		t.Errorf("got serve error %v, want nil", err)
	}
	if err := <-hung; err == nil {
		t.Error("got a response to a hung request, want a dropped connection")
	}
}

func TestPrintBanner(t *testing.T) {
	var b bytes.Buffer
	printBanner(&b, "127.0.0.1:8081", fakeupstream.DemoCredentials())
	out := b.String()
	for _, want := range []string{"http://127.0.0.1:8081", "demo:demo-password", "curl -u demo:demo-password http://127.0.0.1:8081/api/users/1"} {
		if !strings.Contains(out, want) {
			t.Errorf("got banner %q, want it to contain %q", out, want)
		}
	}
}

func TestParseCredentials(t *testing.T) {
	tests := []struct {
		in      string
		want    []fakeupstream.Credential
		wantErr bool
	}{
		{in: "", want: nil},
		{in: "a:pa:t1", want: []fakeupstream.Credential{{Username: "a", Password: "pa", Tenant: "t1"}}},
		{in: "a:pa:t1,b:pb:t1", want: []fakeupstream.Credential{
			{Username: "a", Password: "pa", Tenant: "t1"}, {Username: "b", Password: "pb", Tenant: "t1"}}},
		{in: "a:s3cr3t", wantErr: true},
		{in: "a:s3cr3t:x:t", wantErr: true},
		{in: "a::t", wantErr: true},
		{in: ":s3cr3t:t", wantErr: true},
		{in: "a:s3cr3t:", wantErr: true},
		{in: "a:pa:t1,", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parseCredentials(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("got error %v, want error %v", err, tt.wantErr)
			}
			if err != nil && strings.Contains(err.Error(), "s3cr3t") {
				t.Errorf("got error %q, want it not to repeat the input (it holds passwords)", err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}
