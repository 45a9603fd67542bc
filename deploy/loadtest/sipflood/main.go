// Command sipflood measures how the gateway holds up under a SIP request flood:
// it starts `cxco serve` (embedded store) on 127.0.0.1, floods it from many
// loopback source addresses (127.0.0.10 and up, all inside the default
// --trunk-allow) with INVITE, OPTIONS, INFO or BYE over UDP or TCP, while one
// legitimate source (127.0.0.5) sends an OPTIONS every 100 ms and times the
// answer. It prints the requests sent, the answers the flooders got, the
// gateway's resident memory (before, peak, after) and the legitimate OPTIONS
// latency, and the gateway's own drop counters from /metrics.
//
// Everything is bounded: at most -requests requests (hard cap 1,000,000) within
// -duration (hard cap 2 minutes), all on loopback.
//
//	go run ./deploy/loadtest/sipflood -sources 100 -requests 180000 -rate 6000 -method INVITE
//	go run ./deploy/loadtest/sipflood -transport tcp -method OPTIONS -requests 30000
package main

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	var (
		binary    = flag.String("binary", "", "a cxco binary (default: build ./cmd/cxco)")
		sources   = flag.Int("sources", 100, "flooding source addresses (127.0.0.10 and up), at most 200")
		requests  = flag.Int("requests", 180000, "requests in total, at most 1,000,000")
		rate      = flag.Float64("rate", 6000, "requests per second, all sources together")
		method    = flag.String("method", "INVITE", "INVITE, OPTIONS, INFO, BYE or mixed")
		transport = flag.String("transport", "udp", "udp or tcp (tcp: one connection per source, requests pipelined)")
		duration  = flag.Duration("duration", 60*time.Second, "stop sending after this long, at most 2m")
		settle    = flag.Duration("settle", 10*time.Second, "keep measuring this long after the flood")
		extra     = flag.String("args", "", "more flags for cxco serve, space-separated")
	)
	flag.Parse()
	*sources = min(max(*sources, 1), 200)
	*requests = min(max(*requests, 1), 1_000_000)
	*duration = min(*duration, 2*time.Minute)
	if err := run(*binary, *sources, *requests, *rate, strings.ToUpper(*method), *transport, *duration, *settle, strings.Fields(*extra)); err != nil {
		fmt.Fprintln(os.Stderr, "sipflood:", err)
		os.Exit(1)
	}
}

func freePort() int {
	u, _ := net.ListenPacket("udp", "127.0.0.1:0")
	defer u.Close()
	return u.LocalAddr().(*net.UDPAddr).Port
}

func run(bin string, sources, requests int, rate float64, method, transport string, duration, settle time.Duration, extra []string) error {
	dir, err := os.MkdirTemp("", "sipflood-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if bin == "" {
		bin = filepath.Join(dir, "cxco")
		b := exec.Command("go", "build", "-o", bin, "./cmd/cxco")
		b.Stdout, b.Stderr = os.Stderr, os.Stderr
		if err := b.Run(); err != nil {
			return fmt.Errorf("go build ./cmd/cxco (run from the repository root): %w", err)
		}
	}
	httpPort, sipPort := freePort(), freePort()
	rtp := 30000 + 2*rand.IntN(5000)
	args := append([]string{"serve", "--http", fmt.Sprintf("127.0.0.1:%d", httpPort), "--sip", fmt.Sprintf("127.0.0.1:%d", sipPort),
		"--public-ip", "127.0.0.1", "--rtp-ports", fmt.Sprintf("%d-%d", rtp, rtp+999), "--log-level", "warn",
		"--secret-key", "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=", "--trunk-allow", "127.0.0.0/8"}, extra...)
	gw := exec.Command(bin, args...)
	logf, _ := os.Create(filepath.Join(dir, "gateway.log"))
	defer logf.Close()
	gw.Stderr = logf
	out, _ := gw.StdoutPipe()
	if err := gw.Start(); err != nil {
		return err
	}
	defer func() { _ = gw.Process.Signal(syscall.SIGKILL); _ = gw.Wait() }()
	up := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(out)
		once := sync.Once{}
		for sc.Scan() {
			if strings.Contains(sc.Text(), "SIP:") {
				once.Do(func() { close(up) })
			}
		}
	}()
	select {
	case <-up:
	case <-time.After(30 * time.Second):
		return fmt.Errorf("gateway did not start")
	}
	pid := gw.Process.Pid
	target := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: sipPort}
	fmt.Printf("gateway pid %d, SIP 127.0.0.1:%d, flood: %d %s requests over %s from %d sources at %.0f/s\n",
		pid, sipPort, requests, method, transport, sources, rate)

	// RSS every 50 ms.
	var peak atomic.Int64
	base := rss(pid)
	peak.Store(base)
	stopSampler := make(chan struct{})
	var samplerWG sync.WaitGroup
	samplerWG.Add(1)
	go func() {
		defer samplerWG.Done()
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stopSampler:
				return
			case <-t.C:
				if r := rss(pid); r > peak.Load() {
					peak.Store(r)
				}
			}
		}
	}()

	// The legitimate source: an OPTIONS every 100 ms, each waited for up to 2 s.
	probe := &prober{target: target}
	if err := probe.open(); err != nil {
		return err
	}
	stopProbe := make(chan struct{})
	var probeWG sync.WaitGroup
	probeWG.Add(1)
	go func() { defer probeWG.Done(); probe.run(stopProbe) }()

	// The flood.
	sent, floodTime, answered, err := flood(target, sources, requests, rate, method, transport, duration)
	if err != nil {
		return err
	}
	peakDuring := peak.Load()
	// Let transactions expire and measure on.
	time.Sleep(settle) // a measuring window, not synchronisation
	close(stopProbe)
	probeWG.Wait()
	close(stopSampler)
	samplerWG.Wait()
	after := rss(pid)

	fmt.Printf("sent %d requests in %s (%.0f/s); the flooders got %d answers\n", sent, floodTime.Round(time.Millisecond), float64(sent)/floodTime.Seconds(), answered.Load())
	fmt.Printf("gateway RSS: before %.1f MB, peak %.1f MB (during the flood %.1f MB), %s after it %.1f MB\n",
		mb(base), mb(peak.Load()), mb(peakDuring), settle, mb(after))
	probe.report()
	metrics(httpPort)
	return nil
}

func mb(b int64) float64 { return float64(b) / (1 << 20) }

func rss(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			f := strings.Fields(l)
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb * 1024
		}
	}
	return 0
}

func request(method string, i int, from net.Addr, transport string) []byte {
	if method == "MIXED" {
		method = []string{"INVITE", "OPTIONS", "INFO", "BYE"}[i%4]
	}
	host := from.String()
	tag := ""
	if method == "INFO" || method == "BYE" {
		tag = ";tag=gw" + strconv.Itoa(i) // in-dialog, of a dialog that does not exist
	}
	body := ""
	ct := ""
	if method == "INVITE" {
		body = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
		ct = "Content-Type: application/sdp\r\n"
	}
	return []byte(fmt.Sprintf("%s sip:+15550001234@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/%s %s;branch=z9hG4bKfl%d.%d\r\n"+
		"From: <sip:flood@%s>;tag=f%d\r\nTo: <sip:+15550001234@127.0.0.1>%s\r\nCall-ID: flood-%d-%s\r\nCSeq: 1 %s\r\n"+
		"Contact: <sip:flood@%s>\r\nMax-Forwards: 70\r\n%sContent-Length: %d\r\n\r\n%s",
		method, strings.ToUpper(transport), host, i, rand.Int32(), host, i, tag, i, host, method, host, ct, len(body), body))
}

// flood sends requests from sources at rate, spread over the sources in turn; it
// returns the requests sent and how long sending took, once the answers are in.
func flood(target *net.UDPAddr, sources, requests int, rate float64, method, transport string, duration time.Duration) (int, time.Duration, *atomic.Int64, error) {
	answered := &atomic.Int64{}
	type sender struct {
		write func([]byte) error
		close func()
		local net.Addr
	}
	var senders []sender
	var readers sync.WaitGroup
	for i := range sources {
		ip := net.IPv4(127, 0, 0, byte(10+i))
		if transport == "tcp" {
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: ip}, Timeout: 5 * time.Second}
			c, err := d.Dial("tcp", (&net.TCPAddr{IP: target.IP, Port: target.Port}).String())
			if err != nil {
				return 0, 0, answered, fmt.Errorf("tcp from %s: %w", ip, err)
			}
			readers.Add(1)
			go func() { defer readers.Done(); countAnswers(c, answered); _ = c.Close() }()
			w := bufio.NewWriterSize(c, 64<<10)
			var mu sync.Mutex
			senders = append(senders, sender{write: func(b []byte) error {
				mu.Lock()
				defer mu.Unlock()
				_, err := w.Write(b)
				if w.Available() < 2048 {
					err = w.Flush()
				}
				return err
			}, close: func() {
				// Keep the connection open while the gateway works through what it
				// has buffered: closing at once makes our kernel answer its first
				// response with a reset, which throws away every request the
				// gateway had not read yet (a 2,000-INVITE write became 30).
				mu.Lock()
				_ = w.Flush()
				mu.Unlock()
				_ = c.SetReadDeadline(time.Now().Add(tcpDrain))
			}, local: c.LocalAddr()})
			continue
		}
		c, err := net.ListenUDP("udp", &net.UDPAddr{IP: ip})
		if err != nil {
			return 0, 0, answered, err
		}
		readers.Add(1)
		go func() {
			defer readers.Done()
			buf := make([]byte, 9000)
			for {
				if _, _, err := c.ReadFromUDP(buf); err != nil {
					return
				}
				answered.Add(1)
			}
		}()
		senders = append(senders, sender{write: func(b []byte) error { _, err := c.WriteToUDP(b, target); return err },
			close: func() { _ = c.Close() }, local: c.LocalAddr()})
	}
	start := time.Now()
	sent := 0
	for sent < requests && time.Since(start) < duration {
		// Pace in 1 ms slices.
		due := int(time.Since(start).Seconds()*rate) + 1
		for sent < min(due, requests) {
			s := senders[sent%len(senders)]
			if err := s.write(request(method, sent, s.local, transport)); err != nil && transport == "tcp" {
				// The gateway closed the connection: count it and go on with the others.
				answered.Add(0)
			}
			sent++
		}
		time.Sleep(time.Millisecond) // pacing the sender
	}
	for _, s := range senders {
		s.close()
	}
	sending := time.Since(start)
	readers.Wait()
	return sent, sending, answered, nil
}

// tcpDrain is how long a flooding TCP connection stays open for answers after
// its last request (the gateway closes it sooner when idle or over a limit).
const tcpDrain = 5 * time.Second

var statusLine = regexp.MustCompile(`(?m)^SIP/2\.0 \d{3} `)

func countAnswers(c net.Conn, answered *atomic.Int64) {
	buf := make([]byte, 64<<10)
	var carry []byte
	for {
		n, err := c.Read(buf)
		if n > 0 {
			data := append(carry, buf[:n]...)
			answered.Add(int64(len(statusLine.FindAllIndex(data, -1))))
			if i := bytes.LastIndex(data, []byte("\r\n")); i >= 0 {
				carry = append([]byte(nil), data[i:]...)
			}
		}
		if err != nil {
			return
		}
	}
}

type prober struct {
	target    *net.UDPAddr
	c         *net.UDPConn
	mu        sync.Mutex
	latencies []time.Duration
	lost      int
}

func (p *prober) open() error {
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 5)})
	p.c = c
	return err
}

func (p *prober) run(stop <-chan struct{}) {
	defer p.c.Close()
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	buf := make([]byte, 9000)
	for i := 0; ; i++ {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		callID := fmt.Sprintf("probe-%d-%d", i, rand.Int32())
		msg := fmt.Sprintf("OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bKpr%d\r\nFrom: <sip:probe@127.0.0.5>;tag=p%d\r\n"+
			"To: <sip:127.0.0.1>\r\nCall-ID: %s\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n", p.c.LocalAddr(), i, i, callID)
		sentAt := time.Now()
		_, _ = p.c.WriteToUDP([]byte(msg), p.target)
		deadline := sentAt.Add(2 * time.Second)
		got := false
		for !got && time.Now().Before(deadline) {
			_ = p.c.SetReadDeadline(deadline)
			n, _, err := p.c.ReadFromUDP(buf)
			if err != nil {
				break
			}
			got = bytes.Contains(buf[:n], []byte(callID)) && bytes.HasPrefix(buf[:n], []byte("SIP/2.0 200"))
		}
		p.mu.Lock()
		if got {
			p.latencies = append(p.latencies, time.Since(sentAt))
		} else {
			p.lost++
		}
		p.mu.Unlock()
	}
}

func (p *prober) report() {
	p.mu.Lock()
	defer p.mu.Unlock()
	l := append([]time.Duration(nil), p.latencies...)
	sort.Slice(l, func(i, j int) bool { return l[i] < l[j] })
	q := func(f float64) time.Duration {
		if len(l) == 0 {
			return 0
		}
		return l[min(len(l)-1, int(f*float64(len(l))))].Round(10 * time.Microsecond)
	}
	fmt.Printf("legitimate OPTIONS (127.0.0.5, every 100 ms): %d answered, %d unanswered within 2 s; latency p50 %s p95 %s p99 %s max %s\n",
		len(l), p.lost, q(0.5), q(0.95), q(0.99), q(1))
}

func metrics(port int) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", fmt.Sprintf("http://127.0.0.1:%d/metrics", port), nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Println("metrics:", err)
		return
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "cxco_sip_dropped_total") || strings.HasPrefix(l, "cxco_sip_rejections_total") || strings.HasPrefix(l, "cxco_sip_tcp") {
			fmt.Println("  " + l)
		}
	}
}
