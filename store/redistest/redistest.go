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
	Port    int
	cmd     *exec.Cmd
	dir     string
	persist bool
	extra   []string // more redis-server arguments (cluster mode, replicaof, ...)
	bin     string   // redis-server, or redis-sentinel
	conf    string   // redis-sentinel's config file
	exited  chan struct{}
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
	r := &Redis{dir: t.TempDir(), persist: persist, bin: bin}
	if err := r.start(0); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Stop)
	return r
}

func (r *Redis) start(port int) error {
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
		args := []string{"--port", fmt.Sprint(p), "--bind", "127.0.0.1", "--save", "", "--appendonly", aof,
			"--appendfsync", "always", "--dir", r.dir, "--protected-mode", "yes", "--loglevel", "warning"}
		if r.conf != "" { // redis-sentinel: its config file (which it rewrites) first
			args = []string{r.conf, "--port", fmt.Sprint(p), "--bind", "127.0.0.1", "--dir", r.dir, "--loglevel", "warning"}
		}
		cmd := exec.Command(r.bin, append(args, r.extra...)...)
		out, _ := cmd.StdoutPipe()
		cmd.Stderr = cmd.Stdout
		if err := cmd.Start(); err != nil {
			return fmt.Errorf("start %s: %w", r.bin, err)
		}
		exited := make(chan struct{})
		go func() { _, _ = io.Copy(io.Discard, out); _ = cmd.Wait(); close(exited) }()
		addr := fmt.Sprintf("127.0.0.1:%d", p)
		if WaitTCP(addr, 5*time.Second) {
			r.cmd, r.exited, r.Addr, r.Port, r.URL = cmd, exited, addr, p, "redis://"+addr
			return nil
		}
		_ = cmd.Process.Kill()
		<-exited
		lastErr = fmt.Errorf("%s did not start on %s", r.bin, addr)
	}
	return lastErr
}

// Pid is the server's process id (0 when it is not running).
func (r *Redis) Pid() int {
	if r.cmd == nil || r.cmd.Process == nil {
		return 0
	}
	return r.cmd.Process.Pid
}

// Kill ends the server with SIGKILL, as a crash would, and waits until it is gone.
func (r *Redis) Kill() {
	if r.cmd != nil && r.cmd.Process != nil {
		_ = r.cmd.Process.Kill()
		<-r.exited
		r.cmd = nil
	}
}

// Stop stops the server (SIGTERM: a persistent one writes its file first).
func (r *Redis) Stop() {
	if r.cmd != nil && r.cmd.Process != nil {
		_ = r.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-r.exited:
		case <-time.After(10 * time.Second):
			_ = r.cmd.Process.Kill()
			<-r.exited
		}
		r.cmd = nil
	}
}

// Restart starts the server again on the same port (after Stop), for outage tests.
func (r *Redis) Restart(t testing.TB) {
	t.Helper()
	if err := r.start(r.Port); err != nil {
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

// portFree reports whether a TCP port on 127.0.0.1 can be bound now.
func portFree(p int) bool {
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
	if err != nil {
		return false
	}
	l.Close()
	return true
}

func freePort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
