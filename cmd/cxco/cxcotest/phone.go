package cxcotest

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	gsip "github.com/emiago/sipgo/sip"

	"github.com/cxco/gateway/media/audiotest"
	"github.com/cxco/gateway/media/g711"
	"github.com/cxco/gateway/media/sdp"
)

// Phone is a minimal SIP caller with a real RTP endpoint, for tests: it dials the
// gateway over UDP, sends generated audio and RFC 4733 digits on the 20 ms grid,
// keeps every RTP packet it receives, and answers the gateway's BYE.
type Phone struct {
	t       testing.TB
	sipConn *net.UDPConn
	rtpConn *net.UDPConn
	gw      *net.UDPAddr
	number  string
	callID  string
	fromTag string
	toTag   string
	cseq    int
	codec   string // PCMU or PCMA
	// localURI/remoteURI are the From/To of our in-dialog requests; target is
	// their Request-URI; uas is set when the phone answered rather than dialled.
	localURI, remoteURI, target string
	uas                         bool
	pt                          uint8
	dtmfPT                      uint8
	Remote                      netip.AddrPort // the gateway's RTP address
	ip                          string         // the phone's own address
	sdpIP                       string         // the address its SDP names ("": ip)

	ssrc   uint32
	seq    uint16
	ts     uint32
	next   time.Time // when the phone's clock has its next packet due (RFC 3550 §5.1: it runs on through pauses)
	Impair *Impairment

	mu       sync.Mutex
	packets  []Packet
	arrived  chan struct{} // closed (and replaced) when an RTP packet arrives
	sendMu   sync.Mutex    // one sender of RTP at a time (SendAudio, SendDigit, KeepSilent)
	final    chan *gsip.Response
	byeOK    chan struct{}
	gotBye   chan struct{}
	requests []*gsip.Request
	onReq    func(*gsip.Request) *gsip.Response
	onInvite func(*gsip.Request, *net.UDPAddr) *gsip.Response
	onAck    func()
	silent   bool // a caller that is gone: it sends no ACK and answers nothing
	done     chan struct{}
	wg       sync.WaitGroup
}

// Packet is one RTP packet the phone received.
type Packet struct {
	At      time.Time
	PT      uint8
	Seq     uint16
	TS      uint32
	Marker  bool
	Payload []byte
}

// Impairment damages what the phone sends, deterministically from Seed: loss,
// duplicates, reordering (a packet held back and sent after the next) and jitter
// (each packet delayed by up to Jitter).
type Impairment struct {
	Seed      uint64
	Loss      float64 // fraction dropped
	Duplicate float64
	Reorder   float64
	Jitter    time.Duration
	rnd       *rand.Rand
	held      []byte
	wg        sync.WaitGroup
}

// Dial calls number at the gateway's SIP address and waits for the final answer.
// codec is "PCMU" or "PCMA". It returns the phone (nil unless answered) and the status.
func Dial(t testing.TB, gw string, number, codec string) (*Phone, int) {
	t.Helper()
	return dial(t, gw, number, codec, false)
}

// DialSilent dials like Dial, but the phone then behaves like a caller that is
// gone: it never ACKs the 200 and answers no request (it still records them, and
// WaitBye sees the gateway's BYE).
func DialSilent(t testing.TB, gw string, number, codec string) (*Phone, int) {
	t.Helper()
	return dial(t, gw, number, codec, true)
}

// DialFrom is Dial from the phone's own address local (an IPv4 address of this
// machine or of its network namespace) rather than 127.0.0.1.
func DialFrom(t testing.TB, local, gw string, number, codec string) (*Phone, int) {
	t.Helper()
	return dialFrom(t, local, gw, number, codec, false)
}

// DialBehindNAT is Dial from 127.0.0.1 by a phone behind NAT: its SDP names
// sdpIP (its private address), while its RTP comes from 127.0.0.1, where its SIP
// comes from too.
func DialBehindNAT(t testing.TB, sdpIP, gw string, number, codec string) (*Phone, int) {
	t.Helper()
	return dialVia(t, "127.0.0.1", sdpIP, gw, number, codec, false)
}

func dial(t testing.TB, gw string, number, codec string, silent bool) (*Phone, int) {
	t.Helper()
	return dialFrom(t, "127.0.0.1", gw, number, codec, silent)
}

func dialFrom(t testing.TB, local, gw string, number, codec string, silent bool) (*Phone, int) {
	t.Helper()
	return dialVia(t, local, local, gw, number, codec, silent)
}

func dialVia(t testing.TB, local, sdpIP, gw string, number, codec string, silent bool) (*Phone, int) {
	t.Helper()
	addr, err := net.ResolveUDPAddr("udp", gw)
	if err != nil {
		t.Fatal(err)
	}
	p := newPhone(t, codec, fmt.Sprintf("ph%d", rand.Uint32()), local)
	p.silent = silent
	p.sdpIP = sdpIP
	p.gw, p.number, p.callID = addr, strings.TrimPrefix(number, "+"), fmt.Sprintf("phone-%d@%s", rand.Int64(), local)
	p.start()
	p.send(p.invite())
	timeout := time.After(15 * time.Second)
	for {
		select {
		case res := <-p.final:
			if res.StatusCode < 200 {
				continue
			}
			if res.StatusCode >= 300 {
				p.sendACK(res)
				return nil, res.StatusCode
			}
			if tag, ok := res.To().Params.Get("tag"); ok {
				p.mu.Lock() // readSIP reads it when 200s are retransmitted
				p.toTag = tag
				p.mu.Unlock()
			}
			s, err := sdp.Parse(res.Body())
			if err != nil {
				t.Fatalf("phone: SDP answer: %v\n%s", err, res.Body())
			}
			n, err := sdp.Negotiate(s)
			if err != nil {
				t.Fatalf("phone: negotiate the answer: %v", err)
			}
			p.Remote = n.Remote
			p.sendACK(res)
			return p, 200
		case <-timeout:
			t.Fatal("phone: no final answer to the INVITE")
		}
	}
}

// newPhone binds a phone's SIP and RTP sockets on local (an IPv4 address) and
// closes them when the test ends; start runs its readers once it is set up.
func newPhone(t testing.TB, codec, fromTag, local string) *Phone {
	p := &Phone{t: t, codec: codec, fromTag: fromTag, cseq: 1, dtmfPT: 101, ip: local,
		ssrc: rand.Uint32(), seq: uint16(rand.Uint32()), ts: rand.Uint32(),
		final: make(chan *gsip.Response, 4), byeOK: make(chan struct{}, 1), gotBye: make(chan struct{}), done: make(chan struct{}),
		arrived: make(chan struct{})}
	if codec == "PCMA" {
		p.pt = 8
	}
	var err error
	ip := net.ParseIP(local)
	if p.sipConn, err = net.ListenUDP("udp", &net.UDPAddr{IP: ip}); err != nil {
		t.Fatal(err)
	}
	if p.rtpConn, err = net.ListenUDP("udp", &net.UDPAddr{IP: ip}); err != nil {
		p.sipConn.Close()
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

func (p *Phone) start() {
	p.wg.Add(2)
	go p.readSIP()
	go p.readRTP()
}

func (p *Phone) local() string { return p.sipConn.LocalAddr().String() }

func (p *Phone) headers(method string, cseq int, toTag bool) string {
	to := p.remoteURI
	if to == "" {
		to = fmt.Sprintf("<sip:+%s@%s>", p.number, p.gw)
	}
	if toTag && p.toTag != "" {
		to += ";tag=" + p.toTag
	}
	from := p.localURI
	if from == "" {
		from = "<sip:+27820000001@" + p.ip + ">"
	}
	return fmt.Sprintf("Via: SIP/2.0/UDP %s;branch=z9hG4bK%d;rport\r\nFrom: %s;tag=%s\r\nTo: %s\r\n"+
		"Call-ID: %s\r\nCSeq: %d %s\r\nContact: <sip:phone@%s>\r\nMax-Forwards: 70\r\n",
		p.local(), rand.Int64(), from, p.fromTag, to, p.callID, cseq, method, p.local())
}

func (p *Phone) invite() string {
	port := p.rtpConn.LocalAddr().(*net.UDPAddr).Port
	sdpIP := p.ip
	if p.sdpIP != "" {
		sdpIP = p.sdpIP
	}
	body := fmt.Sprintf("v=0\r\no=phone 1 1 IN IP4 %s\r\ns=-\r\nc=IN IP4 %s\r\nt=0 0\r\n"+
		"m=audio %d RTP/AVP %d 101\r\na=rtpmap:%d %s/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\n",
		sdpIP, sdpIP, port, p.pt, p.pt, p.codec)
	return fmt.Sprintf("INVITE sip:+%s@%s SIP/2.0\r\n%sContent-Type: application/sdp\r\nContent-Length: %d\r\n\r\n%s",
		p.number, p.gw, p.headers("INVITE", 1, false), len(body), body)
}

func (p *Phone) sendACK(res *gsip.Response) {
	if p.silent && res.StatusCode < 300 {
		return
	}
	to := res.To().Value()
	msg := fmt.Sprintf("ACK sip:+%s@%s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bK%d\r\nFrom: <sip:+27820000001@"+p.ip+">;tag=%s\r\nTo: %s\r\n"+
		"Call-ID: %s\r\nCSeq: 1 ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n", p.number, p.gw, p.local(), rand.Int64(), p.fromTag, to, p.callID)
	p.send(msg)
}

func (p *Phone) send(msg string) {
	if _, err := p.sipConn.WriteToUDP([]byte(msg), p.gw); err != nil {
		p.t.Errorf("phone: send: %v", err)
	}
}

// OnRequest lets a test answer in-dialog requests (REFER, NOTIFY, ...); BYE is
// answered by the phone itself. Returning nil answers 200.
func (p *Phone) OnRequest(f func(*gsip.Request) *gsip.Response) {
	p.mu.Lock()
	p.onReq = f
	p.mu.Unlock()
}

func (p *Phone) readSIP() {
	defer p.wg.Done()
	buf := make([]byte, 65535)
	for {
		n, from, err := p.sipConn.ReadFromUDP(buf)
		if err != nil {
			return
		}
		msg, err := gsip.ParseMessage(append([]byte(nil), buf[:n]...))
		if err != nil {
			continue
		}
		switch m := msg.(type) {
		case *gsip.Response:
			if m.CSeq() != nil && m.CSeq().MethodName == gsip.BYE {
				select {
				case p.byeOK <- struct{}{}:
				default:
				}
				continue
			}
			if m.CSeq() != nil && m.CSeq().MethodName == gsip.INVITE {
				p.mu.Lock()
				tagged := p.toTag != ""
				p.mu.Unlock()
				if m.StatusCode >= 200 && tagged {
					p.sendACK(m) // a retransmitted 200: ACK again
					continue
				}
				select {
				case p.final <- m:
				default:
				}
			}
		case *gsip.Request:
			p.mu.Lock()
			p.requests = append(p.requests, m)
			h := p.onReq
			p.mu.Unlock()
			if m.IsAck() {
				if p.onAck != nil {
					p.onAck()
				}
				continue
			}
			if m.IsInvite() && p.onInvite != nil && !m.To().Params.Has("tag") {
				_, _ = p.sipConn.WriteToUDP([]byte(p.onInvite(m, from).String()), from)
				continue
			}
			if p.silent {
				if m.Method == gsip.BYE {
					select {
					case <-p.gotBye:
					default:
						close(p.gotBye)
					}
				}
				continue
			}
			var res *gsip.Response
			if h != nil && m.Method != gsip.BYE {
				res = h(m)
			}
			if res == nil {
				res = gsip.NewResponseFromRequest(m, 200, "OK", nil)
			}
			b := []byte(res.String())
			_, _ = p.sipConn.WriteToUDP(b, from)
			if m.Method == gsip.BYE {
				select {
				case <-p.gotBye:
				default:
					close(p.gotBye)
				}
			}
		}
	}
}

// Requests are the requests the gateway sent the phone.
func (p *Phone) Requests() []*gsip.Request {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]*gsip.Request(nil), p.requests...)
}

func (p *Phone) readRTP() {
	defer p.wg.Done()
	buf := make([]byte, 2048)
	for {
		n, _, err := p.rtpConn.ReadFromUDP(buf)
		if err != nil {
			return
		}
		if n < 12 || buf[0]>>6 != 2 {
			continue
		}
		pk := Packet{At: time.Now(), PT: buf[1] & 0x7f, Marker: buf[1]&0x80 != 0, Seq: binary.BigEndian.Uint16(buf[2:]),
			TS: binary.BigEndian.Uint32(buf[4:]), Payload: append([]byte(nil), buf[12:n]...)}
		p.mu.Lock()
		p.packets = append(p.packets, pk)
		close(p.arrived)
		p.arrived = make(chan struct{})
		p.mu.Unlock()
	}
}

// WaitAudio waits until cond holds for the audio received so far (Audio), checking
// it as each packet arrives, or until d passes; it returns whether cond held.
func (p *Phone) WaitAudio(d time.Duration, cond func(pcm []int16) bool) bool {
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for {
		p.mu.Lock()
		next := p.arrived
		p.mu.Unlock()
		if cond(p.Audio()) {
			return true
		}
		select {
		case <-next:
		case <-deadline.C:
			return cond(p.Audio())
		case <-p.done:
			return cond(p.Audio())
		}
	}
}

// KeepSilent sends silence on the phone's 20 ms clock, as the phone of a caller
// who listens does, until stop is called (stop waits for the last packet).
func (p *Phone) KeepSilent() (stop func()) {
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		frame := make([]int16, 160)
		for {
			select {
			case <-quit:
				return
			case <-p.done:
				return
			default:
			}
			p.SendAudio(frame) // one packet; the next call continues the stream
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { close(quit); <-done }) }
}

// Heard listens (sending silence) until the audio received after sample from
// holds a sound — from its first frame louder than -30 dBFS to its last, at least
// minLen long — that has ended: quiet of silence followed it. It returns that
// audio, or nil if none was heard within d.
func (p *Phone) Heard(from int, minLen, quiet, d time.Duration) []int16 {
	stop := p.KeepSilent()
	defer stop()
	var span []int16
	q, n := int(quiet/(time.Second/8000)), int(minLen/(time.Second/8000))
	p.WaitAudio(d, func(pcm []int16) bool {
		if from > len(pcm) {
			return false
		}
		r := pcm[from:]
		first, last := audiotest.LoudSpan(r, 160, -30)
		if first < 0 || last-first < n || len(r)-last < q {
			return false
		}
		span = r[first:last]
		return true
	})
	return span
}

// Packets returns what was received so far.
func (p *Phone) Packets() []Packet { return p.PacketsFrom(0) }

// PacketsFrom returns what was received after the first i packets.
func (p *Phone) PacketsFrom(i int) []Packet {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Packet(nil), p.packets[min(i, len(p.packets)):]...)
}

// Audio decodes the received audio packets (in sequence order) to 8 kHz PCM.
func (p *Phone) Audio() []int16 {
	pk := p.Packets()
	sort.SliceStable(pk, func(i, j int) bool { return int16(pk[i].Seq-pk[j].Seq) < 0 })
	var out []int16
	for _, x := range pk {
		if x.PT != 0 && x.PT != 8 {
			continue
		}
		pcm := make([]int16, len(x.Payload))
		if x.PT == 8 {
			g711.ALawToPCM(pcm, x.Payload)
		} else {
			g711.ULawToPCM(pcm, x.Payload)
		}
		out = append(out, pcm...)
	}
	return out
}

func (p *Phone) rtpPacket(pt uint8, marker bool, ts uint32, payload []byte) []byte {
	b := make([]byte, 12+len(payload))
	b[0] = 0x80
	b[1] = pt
	if marker {
		b[1] |= 0x80
	}
	binary.BigEndian.PutUint16(b[2:], p.seq)
	binary.BigEndian.PutUint32(b[4:], ts)
	binary.BigEndian.PutUint32(b[8:], p.ssrc)
	copy(b[12:], payload)
	p.seq++
	return b
}

func (p *Phone) writeRTP(b []byte) {
	dst := net.UDPAddrFromAddrPort(p.Remote)
	im := p.Impair
	if im == nil {
		_, _ = p.rtpConn.WriteToUDP(b, dst)
		return
	}
	if im.rnd == nil {
		im.rnd = rand.New(rand.NewPCG(im.Seed, im.Seed^0x9e3779b97f4a7c15))
	}
	r := im.rnd
	if r.Float64() < im.Loss {
		return
	}
	send := func(pkt []byte) {
		if im.Jitter > 0 {
			d := time.Duration(r.Int64N(int64(im.Jitter)))
			im.wg.Add(1)
			time.AfterFunc(d, func() { defer im.wg.Done(); _, _ = p.rtpConn.WriteToUDP(pkt, dst) })
			return
		}
		_, _ = p.rtpConn.WriteToUDP(pkt, dst)
	}
	if im.held != nil {
		send(b)
		send(im.held)
		im.held = nil
		return
	}
	if r.Float64() < im.Reorder {
		im.held = b
		return
	}
	send(b)
	if r.Float64() < im.Duplicate {
		send(b)
	}
}

// resume continues the phone's sampling clock before it sends again: within
// 100 ms of when its next packet was due the stream goes on (what it owes goes
// out at once); later, the RTP timestamp moves on by the time that passed, as
// a real phone's sampling clock runs on through a pause (RFC 3550 §5.1), and a
// new talkspurt begins (true: marker bit). A jitter buffer sees the next
// packet on time, not late by the pause.
func (p *Phone) resume() bool {
	now := time.Now()
	if !p.next.IsZero() && now.Sub(p.next) <= 100*time.Millisecond {
		return false
	}
	if !p.next.IsZero() {
		p.ts += uint32(now.Sub(p.next)/(20*time.Millisecond)) * 160
	}
	p.next = now
	return true
}

// SendAudio sends 8 kHz PCM as 20 ms packets, paced in real time by the
// phone's own clock, as a sound card's would be: one packet every 20 ms of it,
// also across calls to SendAudio (a call made within 100 ms of when the next
// packet was due continues the stream: its first packet has no marker bit); a
// phone held up (a busy machine) sends what it owes at once, without skipping.
// A call made later starts a new talkspurt (marker bit) whose RTP timestamp
// has moved on by the time that passed, as after silence suppression: the
// timestamps keep to the wall clock. It returns when the next packet is due.
func (p *Phone) SendAudio(pcm []int16) {
	p.sendMu.Lock()
	defer p.sendMu.Unlock()
	frame := make([]byte, 160)
	first := p.resume()
	tick := time.NewTimer(time.Until(p.next))
	defer tick.Stop()
	select {
	case <-tick.C:
	case <-p.done:
		return
	}
	for len(pcm) > 0 {
		n := min(160, len(pcm))
		for i := range frame {
			var v int16
			if i < n {
				v = pcm[i]
			}
			if p.pt == 8 {
				frame[i] = g711.EncodeALaw(v)
			} else {
				frame[i] = g711.EncodeULaw(v)
			}
		}
		p.writeRTP(p.rtpPacket(p.pt, first, p.ts, frame))
		first = false
		p.ts += 160
		pcm = pcm[n:]
		p.next = p.next.Add(20 * time.Millisecond)
		tick.Reset(time.Until(p.next))
		select {
		case <-tick.C:
		case <-p.done:
			return
		}
	}
}

// NextTimestamp is the RTP timestamp of the next audio SendAudio sends.
func (p *Phone) NextTimestamp() uint32 { return p.ts }

// CallID is the call's SIP Call-ID.
func (p *Phone) CallID() string { return p.callID }

// Ports returns the phone's SIP and RTP ports.
func (p *Phone) Ports() (sip, rtp int) {
	return p.sipConn.LocalAddr().(*net.UDPAddr).Port, p.rtpConn.LocalAddr().(*net.UDPAddr).Port
}

// Tone makes d of a sine at freq and level (dBFS of its peak), 8 kHz.
func Tone(freq, dBFS float64, d time.Duration) []int16 { return audiotest.Sine(8000, freq, dBFS, d) }

// SendDigit sends an RFC 4733 event (0-9, *, #) of 100 ms, with three end
// packets, on the phone's own clock like SendAudio: a packet every 20 ms of it,
// what a held-up phone owes at once. (On a time.Ticker, which drops the ticks
// a busy machine makes it miss, the event took longer than the 100 ms its
// timestamps claim, and the audio after it arrived late by the difference: a
// jitter buffer rightly dropped it, and TestBridgedTransferAudio's human heard
// nothing of the caller, with 125 late packets.)
func (p *Phone) SendDigit(d rune) {
	p.sendMu.Lock()
	defer p.sendMu.Unlock()
	ev := map[rune]byte{'*': 10, '#': 11}[d]
	if d >= '0' && d <= '9' {
		ev = byte(d - '0')
	}
	p.resume()
	ts := p.ts
	tick := time.NewTimer(time.Until(p.next))
	defer tick.Stop()
	for i := 1; i <= 5; i++ {
		select {
		case <-tick.C:
		case <-p.done:
			return
		}
		end := i == 5
		dur := uint16(i * 160)
		payload := []byte{ev, 10, byte(dur >> 8), byte(dur)}
		if end {
			payload[1] |= 0x80
		}
		reps := 1
		if end {
			reps = 3
		}
		for r := 0; r < reps; r++ {
			p.writeRTP(p.rtpPacket(p.dtmfPT, i == 1 && r == 0, ts, payload))
		}
		p.next = p.next.Add(20 * time.Millisecond)
		tick.Reset(time.Until(p.next))
	}
	p.ts += 5 * 160
}

// Hangup sends BYE and waits for its 200.
func (p *Phone) Hangup() {
	p.cseq++
	target := p.target
	if target == "" {
		target = fmt.Sprintf("sip:cxco@%s", p.gw)
	}
	msg := fmt.Sprintf("BYE %s SIP/2.0\r\n%sContent-Length: 0\r\n\r\n", target, p.headers("BYE", p.cseq, true))
	p.send(msg)
	// RFC 3261 17.1.2.2: over UDP the BYE is resent at T1, doubling to T2, until answered
	// or until Timer F (64*T1 = 32 s). A flood test fills the gateway's socket on a busy
	// machine for longer than 10 s, and the kernel drops our retransmissions with the flood.
	deadline := time.After(64 * 500 * time.Millisecond)
	for interval := 500 * time.Millisecond; ; interval = min(2*interval, 4*time.Second) {
		select {
		case <-p.byeOK:
			return
		case <-deadline:
			p.t.Error("phone: no 200 to our BYE")
			return
		case <-time.After(interval):
			p.send(msg)
		}
	}
}

// WaitBye waits for the gateway to hang up.
func (p *Phone) WaitBye(d time.Duration) bool {
	select {
	case <-p.gotBye:
		return true
	case <-time.After(d):
		return false
	}
}

// Close releases the phone's sockets.
func (p *Phone) Close() {
	select {
	case <-p.done:
		return
	default:
		close(p.done)
	}
	if p.Impair != nil {
		p.Impair.wg.Wait()
	}
	p.sipConn.Close()
	p.rtpConn.Close()
	p.wg.Wait()
}

// Answer listens on a free loopback port for one INVITE (the gateway calling a
// transfer destination, say), answers it with codec and returns the phone once the
// ACK came. addr is where to point the gateway (--trunk-uri sip:<addr>).
func Answer(t testing.TB, codec string) (p *Phone, addr string, wait func() *Phone) {
	t.Helper()
	p = newPhone(t, codec, fmt.Sprintf("hu%d", rand.Uint32()), "127.0.0.1")
	p.uas = true
	answered := make(chan struct{})
	p.onInvite = func(req *gsip.Request, from *net.UDPAddr) *gsip.Response {
		s, err := sdp.Parse(req.Body())
		if err != nil {
			return gsip.NewResponseFromRequest(req, 488, "Not Acceptable Here", nil)
		}
		n, err := sdp.Negotiate(s)
		if err != nil {
			return gsip.NewResponseFromRequest(req, 488, "Not Acceptable Here", nil)
		}
		p.Remote = n.Remote
		p.gw = from
		p.callID = req.CallID().Value()
		p.toTag, _ = req.From().Params.Get("tag")
		p.localURI = "<" + req.To().Address.String() + ">"
		p.remoteURI = "<" + req.From().Address.String() + ">"
		if ct := req.Contact(); ct != nil {
			p.target = ct.Address.String()
		}
		port := p.rtpConn.LocalAddr().(*net.UDPAddr).Port
		body := fmt.Sprintf("v=0\r\no=human 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"+
			"m=audio %d RTP/AVP %d\r\na=rtpmap:%d %s/8000\r\na=ptime:20\r\na=sendrecv\r\n", port, p.pt, p.pt, p.codec)
		res := gsip.NewResponseFromRequest(req, 200, "OK", []byte(body))
		res.To().Params.Add("tag", p.fromTag)
		res.AppendHeader(gsip.NewHeader("Contact", "<sip:human@"+p.local()+">"))
		res.AppendHeader(gsip.NewHeader("Content-Type", "application/sdp"))
		return res
	}
	p.onAck = func() {
		select {
		case <-answered:
		default:
			close(answered)
		}
	}
	p.start()
	return p, p.local(), func() *Phone {
		select {
		case <-answered:
			return p
		case <-time.After(20 * time.Second):
			t.Fatal("the destination was never called")
			return nil
		}
	}
}
