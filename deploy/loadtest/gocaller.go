package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	gsip "github.com/emiago/sipgo/sip"

	"github.com/cxco/gateway/media"
	"github.com/cxco/gateway/media/clock"
	"github.com/cxco/gateway/media/g711"
	"github.com/cxco/gateway/media/sdp"
)

// The Go caller: what SIPp 3.6 cannot do (SRTP, Opus), done with the
// gateway's own media engine on the calling side — each call a media.Stream
// with its codec and SRTP keys, talking the same talk/gap pattern as the SIPp
// callers, in a process of its own (so its CPU is counted apart from the
// gateway's, like SIPp's). `loadtest gocaller ...` is that process; run.go
// starts it as it starts SIPp, and reads the same stat.csv and RTT trace.

type goCallerConfig struct {
	target            string
	numbers           string
	codec             string
	srtp              bool
	calls, limit      int
	rate              float64
	hold, talk, gap   time.Duration
	sipPort           int
	rtpLo, rtpHi      int
	dir               string
	created, ok, fail atomic.Int64
}

func goCallerMain(args []string) error {
	var c goCallerConfig
	fs := flag.NewFlagSet("gocaller", flag.ContinueOnError)
	fs.StringVar(&c.target, "target", "", "the gateway's SIP address")
	fs.StringVar(&c.numbers, "numbers", "", "a SIPp injection file of numbers")
	fs.StringVar(&c.codec, "codec", "PCMU", "PCMU, PCMA, G722 or opus")
	fs.BoolVar(&c.srtp, "srtp", false, "offer SRTP only (RTP/SAVP)")
	fs.IntVar(&c.calls, "calls", 10, "calls in total")
	fs.IntVar(&c.limit, "limit", 10, "calls up at once at most")
	fs.Float64Var(&c.rate, "rate", 5, "new calls per second")
	fs.DurationVar(&c.hold, "hold", 10*time.Second, "how long each call lasts after the 200")
	fs.DurationVar(&c.talk, "talk", 1200*time.Millisecond, "talk ...")
	fs.DurationVar(&c.gap, "gap", 1800*time.Millisecond, "... then silence")
	fs.IntVar(&c.sipPort, "sip-port", 0, "our SIP port")
	fs.IntVar(&c.rtpLo, "rtp-lo", 0, "our RTP ports")
	fs.IntVar(&c.rtpHi, "rtp-hi", 0, "")
	fs.StringVar(&c.dir, "dir", ".", "where stat.csv and the RTT trace go")
	if err := fs.Parse(args); err != nil {
		return err
	}
	b, err := os.ReadFile(c.numbers)
	if err != nil {
		return err
	}
	var numbers []string
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); l != "" && l != "SEQUENTIAL" {
			numbers = append(numbers, l)
		}
	}
	if len(numbers) == 0 {
		return errors.New("gocaller: no numbers")
	}
	gw, err := net.ResolveUDPAddr("udp", c.target)
	if err != nil {
		return err
	}
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: c.sipPort})
	if err != nil {
		return err
	}
	_ = conn.SetReadBuffer(4 << 20)
	pool, err := media.NewPortPool(c.rtpLo, c.rtpHi)
	if err != nil {
		return err
	}
	wheel := clock.New(clock.Options{})
	wheel.Start()
	defer wheel.Stop()
	u := &uac{conn: conn, gw: gw, calls: map[string]chan *gsip.Response{}}
	go u.read()
	rtt, err := os.Create(filepath.Join(c.dir, "gocaller_rtt.csv"))
	if err != nil {
		return err
	}
	defer rtt.Close()
	var rttMu sync.Mutex
	talker := talkerAudio(c.codec, c.talk)

	limit := make(chan struct{}, c.limit)
	var wg sync.WaitGroup
	tick := time.NewTicker(time.Duration(float64(time.Second) / c.rate))
	defer tick.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), c.hold+time.Duration(float64(c.calls)/c.rate*float64(time.Second))+2*time.Minute)
	defer cancel()
	for i := range c.calls {
		<-tick.C
		limit <- struct{}{}
		wg.Add(1)
		c.created.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-limit }()
			d, err := u.call(ctx, &c, i, numbers[i%len(numbers)], pool, wheel, talker)
			if err != nil {
				c.fail.Add(1)
				fmt.Fprintf(os.Stderr, "call %d: %v\n", i, err)
				return
			}
			c.ok.Add(1)
			rttMu.Lock()
			fmt.Fprintf(rtt, "%d;%.3f;1\n", time.Now().UnixMilli(), float64(d.Microseconds())/1000)
			rttMu.Unlock()
		}()
	}
	wg.Wait()
	conn.Close()
	stat := fmt.Sprintf("TotalCallCreated;SuccessfulCall(C);FailedCall(C);Retransmissions(C)\n%d;%d;%d;0\n", c.created.Load(), c.ok.Load(), c.fail.Load())
	if err := os.WriteFile(filepath.Join(c.dir, "stat.csv"), []byte(stat), 0o644); err != nil {
		return err
	}
	fmt.Printf("gocaller: %d calls, %d successful, %d failed\n", c.created.Load(), c.ok.Load(), c.fail.Load())
	if c.fail.Load() > 0 {
		return fmt.Errorf("%d calls failed", c.fail.Load())
	}
	return nil
}

// talkerAudio is the talk part of the caller's pattern in the format the
// stream plays: µ-law for G.711, 16 kHz PCM (little-endian) for the wideband
// codecs. Two tones, slowly modulated, as the SIPp callers' file.
func talkerAudio(codec string, talk time.Duration) []byte {
	rate := 8000
	if codec == "G722" || codec == "opus" {
		rate = 16000
	}
	n := int(talk.Seconds() * float64(rate))
	pcm := make([]int16, n)
	for i := range pcm {
		t := float64(i) / float64(rate)
		env := 0.6 + 0.4*math.Sin(2*math.Pi*3*t)
		pcm[i] = int16(6000 * env * (math.Sin(2*math.Pi*440*t) + 0.5*math.Sin(2*math.Pi*1100*t)))
	}
	if rate == 8000 {
		out := make([]byte, n)
		g711.PCMToULaw(out, pcm)
		return out
	}
	out := make([]byte, 2*n)
	for i, v := range pcm {
		out[2*i], out[2*i+1] = byte(v), byte(uint16(v)>>8)
	}
	return out
}

// uac is a minimal SIP caller on one UDP socket: INVITE (retransmitted until a
// response), ACK, BYE; responses are matched to calls by Call-ID.
type uac struct {
	conn  *net.UDPConn
	gw    *net.UDPAddr
	mu    sync.Mutex
	calls map[string]chan *gsip.Response
}

func (u *uac) read() {
	buf := make([]byte, 65535)
	for {
		n, _, err := u.conn.ReadFromUDP(buf)
		if err != nil {
			return
		}
		msg, err := gsip.ParseMessage(append([]byte(nil), buf[:n]...))
		if err != nil {
			continue
		}
		switch m := msg.(type) {
		case *gsip.Response:
			if m.CallID() == nil {
				continue
			}
			u.mu.Lock()
			ch := u.calls[m.CallID().Value()]
			u.mu.Unlock()
			if ch != nil {
				select {
				case ch <- m:
				default:
				}
			}
		case *gsip.Request:
			if m.IsAck() {
				continue
			}
			// A BYE or session refresh from the gateway: 200.
			res := gsip.NewResponseFromRequest(m, 200, "OK", nil)
			_, _ = u.conn.WriteToUDP([]byte(res.String()), u.gw)
		}
	}
}

func (u *uac) send(s string) { _, _ = u.conn.WriteToUDP([]byte(s), u.gw) }

// transact sends req until a response comes (T1 doubling, as RFC 3261's
// timer A) and waits for a final one.
func (u *uac) transact(ctx context.Context, ch chan *gsip.Response, req string, method string) (*gsip.Response, error) {
	u.send(req)
	retry := 500 * time.Millisecond
	t := time.NewTimer(retry)
	defer t.Stop()
	provisional := false
	deadline := time.After(32 * time.Second)
	for {
		select {
		case r := <-ch:
			if r.CSeq() == nil || string(r.CSeq().MethodName) != method {
				continue
			}
			if r.StatusCode >= 200 {
				return r, nil
			}
			provisional = true
		case <-t.C:
			if !provisional {
				u.send(req)
				retry = min(2*retry, 4*time.Second)
			}
			t.Reset(retry)
		case <-deadline:
			return nil, fmt.Errorf("%s: no final response", method)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

func (u *uac) call(ctx context.Context, c *goCallerConfig, i int, number string, pool *media.PortPool, wheel *clock.Wheel, talker []byte) (time.Duration, error) {
	stream, err := media.NewStream(pool, netip.MustParseAddr("127.0.0.1"), media.Options{Wheel: wheel})
	if err != nil {
		return 0, err
	}
	defer stream.Close()
	local := sdp.NewLocal(netip.MustParseAddr("127.0.0.1"), stream.LocalPort())
	local.Policy = sdp.Policy{Codecs: []string{c.codec}, SRTP: sdp.SRTPDisabled}
	if c.srtp {
		local.Policy.SRTP, local.Policy.Suites = sdp.SRTPRequired, []string{sdp.SuiteAES80}
	}
	offer := local.Offer(sdp.SendRecv)
	callID := fmt.Sprintf("gocaller-%d-%d@127.0.0.1", i, rand.Int64())
	fromTag := fmt.Sprintf("gc%d", rand.Uint32())
	ch := make(chan *gsip.Response, 8)
	u.mu.Lock()
	u.calls[callID] = ch
	u.mu.Unlock()
	defer func() {
		u.mu.Lock()
		delete(u.calls, callID)
		u.mu.Unlock()
	}()
	me := u.conn.LocalAddr().String()
	ruri := fmt.Sprintf("sip:%s@%s", number, u.gw)
	hdr := func(method string, cseq int, to string) string {
		return fmt.Sprintf("Via: SIP/2.0/UDP %s;branch=z9hG4bK%d;rport\r\nFrom: <sip:+2782%07d@127.0.0.1>;tag=%s\r\nTo: %s\r\n"+
			"Call-ID: %s\r\nCSeq: %d %s\r\nContact: <sip:gocaller@%s>\r\nMax-Forwards: 70\r\n", me, rand.Int64(), i, fromTag, to, callID, cseq, method, me)
	}
	start := time.Now()
	inv := fmt.Sprintf("INVITE %s SIP/2.0\r\n%sContent-Type: application/sdp\r\nContent-Length: %d\r\n\r\n%s",
		ruri, hdr("INVITE", 1, "<"+ruri+">"), len(offer), offer)
	res, err := u.transact(ctx, ch, inv, "INVITE")
	if err != nil {
		return 0, err
	}
	setup := time.Since(start)
	to := res.To().Value()
	u.send(fmt.Sprintf("ACK %s SIP/2.0\r\n%sContent-Length: 0\r\n\r\n", ruri, hdr("ACK", 1, to)))
	if res.StatusCode != 200 {
		return 0, fmt.Errorf("INVITE: %d %s", res.StatusCode, res.Reason)
	}
	n, err := local.ParseAnswer(res.Body())
	if err != nil {
		return 0, fmt.Errorf("answer: %w", err)
	}
	format := media.FormatULaw8k
	if c.codec == "G722" || c.codec == "opus" {
		format = media.FormatPCM16k
	}
	if err := stream.Start(n, media.Consumer{Format: format, Sink: func(media.Frame) {}}); err != nil {
		return 0, err
	}
	// Talk, pause, talk ... until the hold time is up.
	end := time.NewTimer(c.hold)
	defer end.Stop()
	period := time.NewTicker(c.talk + c.gap)
	defer period.Stop()
	_ = stream.Play(talker)
	for talking := true; talking; {
		select {
		case <-period.C:
			_ = stream.Play(talker)
		case <-end.C:
			talking = false
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
	bye := fmt.Sprintf("BYE %s SIP/2.0\r\n%sContent-Length: 0\r\n\r\n", ruri, hdr("BYE", 2, to))
	if r, err := u.transact(ctx, ch, bye, "BYE"); err != nil || r.StatusCode != 200 {
		return 0, fmt.Errorf("BYE: %v %v", r, err)
	}
	return setup, nil
}
