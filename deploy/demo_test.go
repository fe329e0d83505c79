package deploy

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// demo is a running `userproxy -demo` (the binary userproxyBin).
type demo struct {
	proxy    string // http://127.0.0.1:port
	admin    string
	upstream string // the embedded fake upstream
	client   *http.Client
}

// startDemo runs userproxy -demo on free loopback ports and stops it when t
// ends. The addresses come from its JSON log lines.
func startDemo(t *testing.T, extraArgs ...string) *demo {
	t.Helper()
	args := append([]string{"-demo", "-listen=127.0.0.1:0", "-admin-listen=127.0.0.1:0", "-log-format=json"}, extraArgs...)
	cmd := exec.Command(userproxyBin, args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")} // no USERPROXY_* from this machine
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting userproxy -demo: %v", err)
	}
	exited := make(chan struct{})
	var logs bytes.Buffer // written only by the reader goroutine until exited
	records := make(chan map[string]any, 64)
	go func() {
		defer close(records)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			logs.Write(sc.Bytes())
			logs.WriteByte('\n')
			var rec map[string]any
			if json.Unmarshal(sc.Bytes(), &rec) == nil {
				select {
				case records <- rec:
				default: // nobody is listening any more; keep draining the pipe
				}
			}
		}
	}()
	go func() {
		cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			cmd.Process.Kill()
			<-exited
			t.Error("userproxy did not exit within 15s of SIGTERM")
		}
	})

	d := &demo{client: &http.Client{Timeout: 10 * time.Second}}
	deadline := time.After(15 * time.Second)
	for d.proxy == "" {
		select {
		case rec, ok := <-records:
			if !ok {
				<-exited
				t.Fatalf("userproxy exited before listening:\n%s", logs.String())
			}
			switch rec["msg"] {
			case "demo mode: embedded fake upstream started":
				d.upstream, _ = rec["url"].(string)
			case "userproxy listening":
				l, _ := rec["listen"].(string)
				a, _ := rec["admin"].(string)
				d.proxy, d.admin = "http://"+l, "http://"+a
			}
		case <-deadline:
			t.Fatal("userproxy did not log \"userproxy listening\" within 15s")
		}
	}
	if d.upstream == "" {
		t.Fatal("userproxy -demo did not log its fake upstream's url")
	}
	t.Cleanup(d.client.CloseIdleConnections)
	return d
}

// do sends one request with the first demo credentials and returns the status.
func (d *demo) do(t *testing.T, method, url, body string) int {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth("demo", "demo-password")
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := d.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// traffic sends the requests that make every kind of series exist: misses
// then hits, a cached 404, a write (invalidation), a pass-through request.
func (d *demo) traffic(t *testing.T) {
	t.Helper()
	for range 2 {
		for _, id := range []string{"1", "2", "3", "4", "5"} {
			if got := d.do(t, http.MethodGet, d.proxy+"/api/users/"+id, ""); got != http.StatusOK {
				t.Fatalf("GET user %s: got %d, want 200", id, got)
			}
		}
	}
	d.do(t, http.MethodGet, d.proxy+"/api/users/999999", "")
	if got := d.do(t, http.MethodPut, d.proxy+"/api/users/1", `{"is_clockedin":"1"}`); got != http.StatusOK {
		t.Fatalf("PUT user 1: got %d, want 200", got)
	}
	d.do(t, http.MethodGet, d.proxy+"/api/roles", "")
}

// scrape returns the metric names of the demo's /metrics: every sample's
// name (histograms give _bucket, _sum and _count) and every family name
// from # TYPE lines.
func (d *demo) scrape(t *testing.T) map[string]bool {
	t.Helper()
	resp, err := d.client.Get(d.admin + "/metrics")
	if err != nil {
		t.Fatalf("scraping /metrics: %v", err)
	}
	defer resp.Body.Close()
	names := map[string]bool{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, "# TYPE "); ok {
			names[strings.Fields(rest)[0]] = true
			continue
		}
		if line == "" || line[0] == '#' {
			continue
		}
		end := strings.IndexAny(line, "{ ")
		if end > 0 {
			names[line[:end]] = true
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("reading /metrics: %v", err)
	}
	return names
}
