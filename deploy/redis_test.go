package deploy

import (
	"bufio"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"testing"
	"time"
)

// startRedis runs a redis-server of the test's own on a free loopback port,
// killed at cleanup, and returns its URL: with it, userproxy -demo exports the
// Redis and in-process-tier metrics too. Without redis-server the test skips,
// or fails when CI is set (see promTool).
func startRedis(t *testing.T) string {
	t.Helper()
	bin := promTool(t, "redis-server") // same lookup and CI rule
	for range 5 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", t.TempDir())
		if err := cmd.Start(); err != nil {
			t.Fatalf("starting redis-server: %v", err)
		}
		exited := make(chan struct{})
		go func() { cmd.Wait(); close(exited) }()
		t.Cleanup(func() { cmd.Process.Kill(); <-exited })
		addr := "127.0.0.1:" + strconv.Itoa(port)
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			select {
			case <-exited:
				deadline = time.Time{} // port taken meanwhile: try another
			default:
			}
			if deadline.IsZero() {
				break
			}
			if pid, err := redisPID(addr); err == nil && pid == cmd.Process.Pid {
				return "redis://" + addr
			}
		}
	}
	t.Fatal("redis-server did not start on a free port in 5 attempts")
	return ""
}

// redisPID asks the server on addr for its process id, so a server that
// another process started on the same port is not taken for ours.
func redisPID(addr string) (int, error) {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(time.Second))
	if _, err := conn.Write([]byte("INFO server\r\n")); err != nil {
		return 0, err
	}
	sc := bufio.NewScanner(conn)
	for sc.Scan() {
		var pid int
		if _, err := fmt.Sscanf(sc.Text(), "process_id:%d", &pid); err == nil {
			return pid, nil
		}
	}
	return 0, fmt.Errorf("no process_id from %s: %v", addr, sc.Err())
}
