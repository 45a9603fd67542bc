// Package cxcotest runs the built cxco binary (and other real processes) in tests:
// it builds it once, starts it with its output kept, and finds free ports.
package cxcotest

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cxco/gateway/store/redistest"
)

// WaitTCP waits until something listens on addr.
func WaitTCP(addr string, d time.Duration) bool { return redistest.WaitTCP(addr, d) }

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		if t != nil {
			t.Fatal(err)
		}
		panic(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// FreeUDPPort returns a UDP port on 127.0.0.1 that was free a moment ago, whose TCP twin was free too.
func FreeUDPPort(t testing.TB) int {
	for i := 0; i < 50; i++ {
		u, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := u.LocalAddr().(*net.UDPAddr).Port
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		u.Close()
		if err == nil {
			l.Close()
			return port
		}
	}
	t.Fatal("no free UDP+TCP port")
	return 0
}

// FreeMediaPort is a port for SIPp's -mp: SIPp binds it and the three after it
// (audio RTP and RTCP, then video RTP and RTCP at +2 and +3), so all four must
// be free. It is taken from 10000-19999, below the test gateways' RTP blocks
// (20000 and up) and the kernel's ephemeral range (32768 and up), where a port
// checked free a moment ago is not handed to another process's socket.
func FreeMediaPort(t testing.TB, host string) int {
	for i := 0; i < 200; i++ {
		base := 10000 + 4*rand.IntN(2500)
		var held []net.PacketConn
		for p := base; p < base+4; p++ {
			u, err := net.ListenPacket("udp", net.JoinHostPort(host, fmt.Sprint(p)))
			if err != nil {
				break
			}
			held = append(held, u)
		}
		for _, u := range held {
			u.Close()
		}
		if len(held) == 4 {
			return base
		}
	}
	t.Fatal("no four free UDP ports for SIPp's media")
	return 0
}

// RepoRoot is the module's root folder.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", "..", ".."))
}

var (
	buildOnce, plainOnce sync.Once
	buildPath, plainPath string
	buildErr, plainErr   error
)

// Binary builds cmd/cxco once per test process (with -race when the tests run with it) and returns its path.
func Binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		if p := os.Getenv("CXCO_TEST_BINARY"); p != "" {
			buildPath = p // built by a parent test process
			return
		}
		buildPath, buildErr = build(raceEnabled)
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return buildPath
}

// PlainBinary builds cmd/cxco without -race, as it ships, once per test
// process: for the tests that measure timing (the race detector slows the media
// path severalfold, and a jitter buffer would measure the detector).
func PlainBinary(t testing.TB) string {
	t.Helper()
	if !raceEnabled {
		return Binary(t)
	}
	plainOnce.Do(func() {
		if p := os.Getenv("CXCO_TEST_PLAIN_BINARY"); p != "" {
			plainPath = p
			return
		}
		plainPath, plainErr = build(false)
	})
	if plainErr != nil {
		t.Fatal(plainErr)
	}
	return plainPath
}

func build(race bool) (string, error) {
	dir, err := os.MkdirTemp("", "cxco-bin-")
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, "cxco")
	args := []string{"build", "-o", path}
	if race {
		args = append(args, "-race")
	}
	args = append(args, "./cmd/cxco")
	cmd := exec.Command("go", args...)
	cmd.Dir = RepoRoot()
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return path, nil
}

// Process is a running cxco (or other) process whose output is kept.
type Process struct {
	Cmd    *exec.Cmd
	mu     sync.Mutex
	stdout strings.Builder
	stderr strings.Builder
	lines  chan string
	logged chan struct{} // closed (and replaced) when a stderr line arrives
	done   chan struct{}
}

// Start runs the binary with args and env (added to the current environment), and
// kills it when the test ends. Unless env or args name one, the process gets a
// spool directory of its own (CXCO_SPOOL_DIR): writes a gateway saves at shutdown
// are replayed by the next start in the same directory, never by another test's.
func Start(t testing.TB, bin string, env []string, args ...string) *Process {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(append(os.Environ(), "CXCO_SPOOL_DIR="+t.TempDir()), env...)
	p := &Process{Cmd: cmd, lines: make(chan string, 1000), logged: make(chan struct{}), done: make(chan struct{})}
	so, _ := cmd.StdoutPipe()
	se, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); p.pump(so, &p.stdout, true) }()
	go func() { defer wg.Done(); p.pump(se, &p.stderr, false) }()
	go func() { wg.Wait(); _ = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.Kill()
		if t.Failed() {
			t.Logf("%s stdout:\n%s\nstderr (tail):\n%s", filepath.Base(bin), p.Stdout(), tail(p.Stderr(), 60))
		}
	})
	return p
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func (p *Process) pump(r io.Reader, into *strings.Builder, lines bool) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		p.mu.Lock()
		into.WriteString(sc.Text() + "\n")
		if !lines {
			close(p.logged)
			p.logged = make(chan struct{})
		}
		p.mu.Unlock()
		if lines {
			select {
			case p.lines <- sc.Text():
			default:
			}
		}
	}
}

// Stdout is what the process printed so far.
func (p *Process) Stdout() string { p.mu.Lock(); defer p.mu.Unlock(); return p.stdout.String() }

// Stderr is what the process logged so far.
func (p *Process) Stderr() string { p.mu.Lock(); defer p.mu.Unlock(); return p.stderr.String() }

// WaitStdout waits until a stdout line contains substr and returns it.
func (p *Process) WaitStdout(t testing.TB, substr string, d time.Duration) string {
	t.Helper()
	l, ok := p.waitStdout(substr, d)
	if !ok {
		t.Fatalf("no %q on stdout within %s (or the process exited)", substr, d)
	}
	return l
}

func (p *Process) waitStdout(substr string, d time.Duration) (string, bool) {
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case l := <-p.lines:
			if strings.Contains(l, substr) {
				return l, true
			}
		case <-p.done:
			// Lines may still be buffered.
			for {
				select {
				case l := <-p.lines:
					if strings.Contains(l, substr) {
						return l, true
					}
				default:
					return "", false
				}
			}
		case <-timer.C:
			return "", false
		}
	}
}

// WaitStderr waits until the log contains substr.
func (p *Process) WaitStderr(t testing.TB, substr string, d time.Duration) {
	t.Helper()
	if !p.WaitLog(d, func(log string) bool { return strings.Contains(log, substr) }) {
		select {
		case <-p.done:
			t.Fatalf("process exited before logging %q", substr)
		default:
		}
		t.Fatalf("no %q in the log within %s", substr, d)
	}
}

// WaitLog waits until cond holds for the whole log so far, checking it as each
// line arrives, or until d passes or the process exits; it returns whether cond held.
func (p *Process) WaitLog(d time.Duration, cond func(log string) bool) bool {
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for {
		p.mu.Lock()
		next := p.logged
		log := p.stderr.String()
		p.mu.Unlock()
		if cond(log) {
			return true
		}
		select {
		case <-next:
		case <-p.done:
			return cond(p.Stderr())
		case <-deadline.C:
			return cond(p.Stderr())
		}
	}
}

// Signal sends a signal.
func (p *Process) Signal(sig os.Signal) { _ = p.Cmd.Process.Signal(sig) }

// Wait waits for the process to exit, up to d, and returns its exit code (-1 on timeout).
func (p *Process) Wait(d time.Duration) int {
	select {
	case <-p.done:
		return p.Cmd.ProcessState.ExitCode()
	case <-time.After(d):
		return -1
	}
}

// Kill ends the process at once.
func (p *Process) Kill() {
	select {
	case <-p.done:
	default:
		_ = p.Cmd.Process.Kill()
		<-p.done
	}
}

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Context returns a context for a test with a deadline.
func Context(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// Eventually polls cond until it holds, and fails the test after d.
func Eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond) // polling a condition
	}
}
