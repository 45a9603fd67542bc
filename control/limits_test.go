package control_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cxco/gateway/control"
	"github.com/cxco/gateway/store"
)

// slowPost opens a connection, sends an authenticated POST whose body never
// finishes (a byte now and then until stop), and returns the connection.
func slowPost(t *testing.T, base, key string, stop <-chan struct{}) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	fmt.Fprintf(c, "POST /api/agents/ HTTP/1.1\r\nHost: x\r\nX-API-Key: %s\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{", key)
	go func() {
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				if _, err := c.Write([]byte(" ")); err != nil {
					return
				}
			}
		}
	}()
	return c
}

// TestSlowBodyCutOff: a body that does not arrive whole within ReadTimeout gets
// 408 request_timeout and the connection is closed, however often a byte comes.
func TestSlowBodyCutOff(t *testing.T) {
	e := newEnv(t, envOpts{api: func(o *control.Options) { o.ReadTimeout = 500 * time.Millisecond }})
	tn := e.bigTenant("Slow")
	stop := make(chan struct{})
	defer close(stop)
	c := slowPost(t, e.base, tn.userKey, stop)
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no answer to a slow body: %v", err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusRequestTimeout {
		b, _ := io.ReadAll(res.Body)
		t.Fatalf("status %d, want 408: %s", res.StatusCode, b)
	}
	buf := make([]byte, 4096)
	for {
		if _, err := res.Body.Read(buf); err != nil {
			break
		}
	}
	if _, err := c.Read(buf); err == nil {
		t.Fatal("the connection stays open after the 408")
	}
	// A normal request still works.
	e.must(201, "POST", "/api/agents/", tn.userKey, agentBody(nil))
}

// TestKeyConcurrencyCap: one key holding KeyConcurrency slow requests gets 429
// on the next at once; another key of the same company is not affected; once
// the slow ones end, the key works again.
func TestKeyConcurrencyCap(t *testing.T) {
	e := newEnv(t, envOpts{api: func(o *control.Options) { o.KeyConcurrency = 4; o.ReadTimeout = time.Minute }})
	tn := e.bigTenant("Busy")
	stop := make(chan struct{})
	// Five slow requests: four hold the key's slots, the one that comes last is
	// refused with 429 at once (whichever it is); nothing else asks meanwhile.
	answered := make(chan int, 5)
	var conns []net.Conn
	for range 5 {
		c := slowPost(t, e.base, tn.userKey, stop)
		conns = append(conns, c)
		go func() {
			_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
			res, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				return
			}
			res.Body.Close()
			answered <- res.StatusCode
		}()
	}
	select {
	case code := <-answered:
		if code != http.StatusTooManyRequests {
			t.Fatalf("a slow request was answered %d, want 429 for the fifth", code)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("five slow requests of one key with a cap of 4: none refused")
	}
	r := e.do("GET", "/api/agents/", tn.userKey, nil)
	isError(t, "a request while 4 are in progress", r, 429, "rate_limited", "in progress")
	if r.Header.Get("Retry-After") == "" {
		t.Fatal("no Retry-After")
	}
	other := e.must(201, "POST", "/api/users/", tn.compKey, map[string]any{"email": "other@busy.example", "name": "O"}).json(t)["api_key"].(string)
	e.must(200, "GET", "/api/agents/", other, nil)
	select {
	case code := <-answered:
		t.Fatalf("a second slow request was answered (%d): the four should still hold their slots", code)
	default:
	}
	close(stop)
	for _, c := range conns {
		c.Close()
	}
	waitFor(t, 10*time.Second, "slots released", func() bool { return e.do("GET", "/api/agents/", tn.userKey, nil).Status == 200 })
}

// blockingCaller is a TestCaller whose EndTestCall blocks until its context ends.
type blockingCaller struct{ entered chan struct{} }

func (b *blockingCaller) StartTestCall(context.Context, *store.Company, *store.Agent, string) (int64, string, error) {
	return 0, "", fmt.Errorf("not used")
}

func (b *blockingCaller) EndTestCall(ctx context.Context, _, _ int64) error {
	b.entered <- struct{}{}
	<-ctx.Done()
	return ctx.Err()
}

// TestClientClosedIs499: a client that goes away while its request is in
// progress is counted as 499 client_closed, not as a 500.
func TestClientClosedIs499(t *testing.T) {
	caller := &blockingCaller{entered: make(chan struct{}, 1)}
	var mu sync.Mutex
	statuses := map[int]int{}
	done := make(chan struct{}, 1)
	e := newEnv(t, envOpts{api: func(o *control.Options) {
		o.TestCaller = caller
		o.Observe = func(route string, status int, _ time.Duration) {
			if strings.Contains(route, "test-calls") {
				mu.Lock()
				statuses[status]++
				mu.Unlock()
				done <- struct{}{}
			}
		}
	}})
	tn := e.bigTenant("Gone")
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "DELETE", e.base+"/api/test-calls/7", nil)
	req.Header.Set("X-API-Key", tn.userKey)
	errc := make(chan error, 1)
	go func() {
		res, err := http.DefaultClient.Do(req)
		if err == nil {
			res.Body.Close()
		}
		errc <- err
	}()
	<-caller.entered
	cancel()
	<-errc
	<-done
	mu.Lock()
	defer mu.Unlock()
	if statuses[499] != 1 || len(statuses) != 1 {
		t.Fatalf("statuses %v, want one 499", statuses)
	}
}
