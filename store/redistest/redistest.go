// Package redistest starts a real redis-server on a free loopback port for tests.
package redistest

import (
	"fmt"
	"io"
	"net"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// Redis is a redis-server started for one test.
type Redis struct {
	URL     string
	Addr    string
	cmd     *exec.Cmd
	dir     string
	persist bool
}

// StartRedis starts redis-server on a free loopback port, with no persistence, and
// stops it when the test ends. A missing redis-server fails the test with how to
// install it: it never skips.
func StartRedis(t testing.TB) *Redis { return start(t, false) }

// StartPersistentRedis is StartRedis with an append-only file, so Stop and Restart
// keep the data (an outage, not a wipe).
func StartPersistentRedis(t testing.TB) *Redis { return start(t, true) }

func start(t testing.TB, persist bool) *Redis {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("redis-server not found: install it with `apt-get install -y redis-server` (deploy/test.sh does this)")
	}
	r := &Redis{dir: t.TempDir(), persist: persist}
	if err := r.start(bin, 0); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Stop)
	return r
}

func (r *Redis) start(bin string, port int) error {
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		p := port
		if p == 0 {
			p = freePort()
		}
		aof := "no"
		if r.persist {
			aof = "yes"
		}
		cmd := exec.Command(bin, "--port", fmt.Sprint(p), "--bind", "127.0.0.1", "--save", "", "--appendonly", aof,
			"--appendfsync", "always", "--dir", r.dir, "--protected-mode", "yes", "--loglevel", "warning")
		out, _ := cmd.StdoutPipe()
		cmd.Stderr = cmd.Stdout
		if err := cmd.Start(); err != nil {
			return fmt.Errorf("start redis-server: %w", err)
		}
		go io.Copy(io.Discard, out)
		addr := fmt.Sprintf("127.0.0.1:%d", p)
		if WaitTCP(addr, 5*time.Second) {
			r.cmd, r.Addr, r.URL = cmd, addr, "redis://"+addr
			return nil
		}
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		lastErr = fmt.Errorf("redis-server did not start on %s", addr)
	}
	return lastErr
}

// Stop stops the server (SIGTERM: a persistent one writes its file first).
func (r *Redis) Stop() {
	if r.cmd != nil && r.cmd.Process != nil {
		_ = r.cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = r.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = r.cmd.Process.Kill()
			<-done
		}
		r.cmd = nil
	}
}

// Restart starts the server again on the same port (after Stop), for outage tests.
func (r *Redis) Restart(t testing.TB) {
	t.Helper()
	bin, _ := exec.LookPath("redis-server")
	_, port, _ := net.SplitHostPort(r.Addr)
	var p int
	fmt.Sscan(port, &p)
	if err := r.start(bin, p); err != nil {
		t.Fatal(err)
	}
}

// WaitTCP waits up to d until something accepts TCP connections on addr.
func WaitTCP(addr string, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

func freePort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
