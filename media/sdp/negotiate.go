package sdp

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Packet times: the far end's ptime in MinPtime..MaxPtime is what the
// jitter buffer is built for; Negotiate reports other values in
// Negotiated.Ptime without rejecting the call. We always send 20 ms.
const (
	MinPtime  = 10 * time.Millisecond
	MaxPtime  = 60 * time.Millisecond
	SendPtime = 20 * time.Millisecond
)

// DefaultDTMFPayloadType is the telephone-event payload type in our offers.
const DefaultDTMFPayloadType = 101

// Negotiated is what an offer/answer exchange settled for the audio stream.
type Negotiated struct {
	// Codec is PCMU, PCMA, G722 or opus, with the payload type the far end
	// uses and its a=fmtp (for Opus, what it wants to receive: RFC 7587 §6.1).
	Codec Codec
	// DTMF is telephone-event/8000 with the far end's payload type;
	// HasDTMF is false when it was not offered.
	DTMF    Codec
	HasDTMF bool
	// SRTP is set when the stream is SRTP; nil for plain RTP.
	SRTP *SRTP
	// Remote is where to send RTP until the far end's own RTP arrives
	// (symmetric RTP). It is not valid when the far end put the call on
	// hold with c=0.0.0.0.
	Remote     netip.AddrPort
	RemoteRTCP netip.AddrPort
	// Ptime is the far end's packet time (0 if not given); MaxPtime the
	// longest it accepts (0 if not given).
	Ptime    time.Duration
	MaxPtime time.Duration
	// Direction is ours: what our side of the stream does.
	Direction Direction
	// Hold is set when the far end does not want to receive media
	// (sendonly, inactive, or c=0.0.0.0).
	Hold bool
	// MediaIndex is the m= line used.
	MediaIndex int
	// proto is the m= line's transport, answered as offered.
	proto string
}

// Policy is what one trunk takes, in its order of preference. The zero
// Policy is PCMU and PCMA in the offer's order, SRTP optional.
type Policy struct {
	// Codecs by name (PCMU, PCMA, G722, opus), the preferred first. When we
	// answer, the first of these the offer has wins, whatever the offer's
	// order; nil means PCMU and PCMA, in the offer's order. Our offers list
	// them in this order.
	Codecs []string
	// SRTP is the encryption policy.
	SRTP SRTPPolicy
	// Suites are the SRTP suites we take and offer, preferred first; nil
	// means DefaultSuites.
	Suites []string
}

// DefaultCodecs are the codecs of the zero Policy.
var DefaultCodecs = []string{"PCMU", "PCMA"}

// KnownCodecs are the codec names a Policy may list.
var KnownCodecs = []string{"PCMU", "PCMA", "G722", "opus"}

// ParseCodecs reads a comma-separated preference list ("G722,PCMU"), names
// matched without regard to case; an empty string is nil (the default).
func ParseCodecs(s string) ([]string, error) {
	var out []string
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		c, ok := canonical(f)
		if !ok {
			return nil, fmt.Errorf("codec %q: want one of %s", f, strings.Join(KnownCodecs, ", "))
		}
		if slices.Contains(out, c) {
			return nil, fmt.Errorf("codec %q listed twice", f)
		}
		out = append(out, c)
	}
	return out, nil
}

func canonical(name string) (string, bool) {
	for _, k := range KnownCodecs {
		if strings.EqualFold(k, name) {
			return k, true
		}
	}
	return "", false
}

func (p *Policy) suites() []string {
	if len(p.Suites) == 0 {
		return DefaultSuites
	}
	return p.Suites
}

func (p *Policy) codecs() []string {
	if len(p.Codecs) == 0 {
		return DefaultCodecs
	}
	return p.Codecs
}

// supported maps an rtpmap entry to the codec we know by that name, keeping
// the far end's payload type and fmtp.
func supported(c Codec) (Codec, bool) {
	var k Codec
	switch {
	case strings.EqualFold(c.Name, "PCMU"):
		k = PCMU
	case strings.EqualFold(c.Name, "PCMA"):
		k = PCMA
	case strings.EqualFold(c.Name, "G722"):
		k = G722
	case strings.EqualFold(c.Name, "opus"):
		if c.ClockRate != 48000 || c.Channels > 2 {
			return Codec{}, false
		}
		k = Opus
		k.PayloadType, k.Fmtp = c.PayloadType, c.Fmtp
		return k, true
	default:
		return Codec{}, false
	}
	if c.ClockRate != 8000 || (c.Channels != 0 && c.Channels != 1) {
		return Codec{}, false
	}
	k.PayloadType, k.Fmtp = c.PayloadType, c.Fmtp
	return k, true
}

func isDTMF(c Codec) bool {
	return strings.EqualFold(c.Name, "telephone-event") && c.ClockRate == 8000
}

func rtpProto(p string) bool {
	return p == "RTP/AVP" || p == "RTP/AVPF" || secureProto(p)
}

// chooseCodec picks the stream's codec: in our order of preference when we
// answer an offer with a Policy that names codecs, else the first the SDP
// lists among those we take.
func chooseCodec(m *Media, p *Policy, answering bool) (Codec, bool) {
	if len(p.Codecs) > 0 && answering {
		for _, name := range p.Codecs {
			for _, c := range m.Codecs {
				if sc, ok := supported(c); ok && sc.Name == name {
					return sc, true
				}
			}
		}
		return Codec{}, false
	}
	allowed := p.codecs()
	for _, c := range m.Codecs {
		if sc, ok := supported(c); ok && slices.Contains(allowed, sc.Name) {
			return sc, true
		}
	}
	return Codec{}, false
}

// srtpFor applies the policy to one m= line. When we answer (offered nil) it
// picks the first a=crypto line with a suite we take; for an answer to our
// offer, the line must echo one of ours. An error refuses the line: why.
func srtpFor(m *Media, p *Policy, offered []Crypto, keyFor func(string) Key) (*SRTP, error) {
	secure := secureProto(m.Proto)
	if p.SRTP == SRTPDisabled {
		if secure {
			return nil, ErrSRTPUnusable
		}
		return nil, nil // a=crypto in RTP/AVP (best effort) is ignored
	}
	var srtp *SRTP
	for _, c := range m.Crypto {
		if offered != nil {
			for _, o := range offered {
				if o.Tag == c.Tag && o.Suite == c.Suite {
					srtp = &SRTP{Suite: c.Suite, Local: o.Key, Remote: c.Key}
					break
				}
			}
		} else if slices.Contains(p.suites(), c.Suite) {
			srtp = &SRTP{Suite: c.Suite, Local: keyFor(c.Suite), Remote: c.Key}
			srtp.tag = c.Tag
		}
		if srtp != nil {
			return srtp, nil
		}
	}
	switch {
	case secure:
		return nil, ErrSRTPUnusable
	case p.SRTP == SRTPRequired:
		return nil, ErrSRTPRequired
	}
	return nil, nil
}

// Negotiate picks from an offer what the zero Policy takes: the first audio
// stream with PCMU or PCMA, the first of them in the stream's order, SRTP if
// offered. See NegotiateWith.
func Negotiate(s *Session) (Negotiated, error) {
	return negotiate(s, &Policy{}, true, nil, func(string) Key { return newKey() })
}

// NegotiateWith picks from an offer the first audio stream that p takes. It
// returns ErrNoCommonCodec if no stream has a codec of p, ErrSRTPRequired or
// ErrSRTPUnusable if streams had one but failed the SRTP policy, and
// ErrMalformed if the chosen stream has no connection address. Keys of the
// SRTP it settles are new, random ones (Local.Answer uses the call's).
func NegotiateWith(s *Session, p Policy) (Negotiated, error) {
	return negotiate(s, &p, true, nil, func(string) Key { return newKey() })
}

func negotiate(s *Session, p *Policy, answering bool, offered []Crypto, keyFor func(string) Key) (Negotiated, error) {
	var srtpErr error
	for i := range s.Media {
		m := &s.Media[i]
		if m.Type != "audio" || m.Port == 0 || !rtpProto(m.Proto) {
			continue
		}
		n := Negotiated{MediaIndex: i, proto: m.Proto}
		var found bool
		if n.Codec, found = chooseCodec(m, p, answering); !found {
			continue
		}
		srtp, err := srtpFor(m, p, offered, keyFor)
		if err != nil {
			if srtpErr == nil || errors.Is(err, ErrSRTPRequired) {
				srtpErr = err
			}
			continue
		}
		n.SRTP = srtp
		for _, c := range m.Codecs {
			if isDTMF(c) {
				n.DTMF = Codec{PayloadType: c.PayloadType, Name: "telephone-event", ClockRate: 8000, Fmtp: c.Fmtp}
				n.HasDTMF = true
				break
			}
		}
		if !m.Conn.IsValid() {
			return Negotiated{}, fmt.Errorf("%w: audio stream %d has no usable connection address", ErrMalformed, i)
		}
		dir := m.Direction
		if m.Conn.IsUnspecified() {
			// Old-style hold (RFC 2543): the far end does not receive.
			n.Hold = true
			if dir == SendRecv {
				dir = SendOnly
			} else if dir == RecvOnly {
				dir = Inactive
			}
		} else {
			n.Remote = netip.AddrPortFrom(m.Conn, uint16(m.Port))
			switch {
			case m.HasRTCP && m.RTCP.Addr().IsValid():
				n.RemoteRTCP = m.RTCP
			case m.HasRTCP:
				n.RemoteRTCP = netip.AddrPortFrom(m.Conn, m.RTCP.Port())
			case m.Port < 65535:
				n.RemoteRTCP = netip.AddrPortFrom(m.Conn, uint16(m.Port+1))
			}
		}
		if !dir.Receives() {
			n.Hold = true
		}
		n.Direction = dir.Reverse()
		n.Ptime, n.MaxPtime = m.Ptime, m.MaxPtime
		return n, nil
	}
	if srtpErr != nil {
		return Negotiated{}, srtpErr
	}
	return Negotiated{}, ErrNoCommonCodec
}

// Local is our side of one call's SDP: our address and port, and the o=
// line's session id and version. The version goes up whenever the body we
// send changes. Methods are safe for concurrent use.
type Local struct {
	Addr netip.Addr // address written into c= and o=
	Port int        // RTP port; RTCP is Port+1
	// DTMFPayloadType is used in our offers; 0 means 101.
	DTMFPayloadType uint8
	// Policy is the trunk's: codecs and SRTP. Set it before the first
	// Answer or Offer; Fix narrows it to the call's codec once media runs.
	Policy Policy

	mu        sync.Mutex
	sessionID uint64
	version   uint64
	last      string         // body of the last SDP sent, without the o= line
	keys      map[string]Key // our SRTP master key per suite, one for the call
	offered   []Crypto       // the a=crypto lines of our last offer
}

// NewLocal returns our side for a call with a random session id.
func NewLocal(addr netip.Addr, port int) *Local {
	var b [8]byte
	_, _ = rand.Read(b[:])
	id := binary.BigEndian.Uint64(b[:]) >> 2 // positive, fits NTP-like ids
	return &Local{Addr: addr, Port: port, sessionID: id, version: id}
}

// SessionID returns the o= line's session id.
func (l *Local) SessionID() uint64 { return l.sessionID }

// Version returns the o= line's current version.
func (l *Local) Version() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.version
}

// keyFor returns the call's SRTP key for a suite, made on first use. The
// same key answers every re-INVITE, so the stream never needs new keys for
// its sending side.
func (l *Local) keyFor(suite string) Key {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.keys == nil {
		l.keys = make(map[string]Key, 2)
	}
	k, ok := l.keys[suite]
	if !ok {
		k = newKey()
		l.keys[suite] = k
	}
	return k
}

// Answer parses an offer, negotiates it under the Policy and builds our
// answer. Errors wrap ErrMalformed, ErrNoCommonCodec, ErrSRTPRequired or
// ErrSRTPUnusable.
func (l *Local) Answer(offer []byte) ([]byte, Negotiated, error) {
	s, err := Parse(offer)
	if err != nil {
		return nil, Negotiated{}, err
	}
	p := l.policy()
	n, err := negotiate(s, &p, true, nil, l.keyFor)
	if err != nil {
		return nil, Negotiated{}, err
	}
	return l.build(s, n), n, nil
}

// CurrentPolicy returns the Policy as it is now (Fix narrows it).
func (l *Local) CurrentPolicy() Policy { return l.policy() }

func (l *Local) policy() Policy {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.Policy
}

// Fix narrows the Policy to what the call's media runs with: its codec, and
// SRTP or plain RTP. A later offer (a re-INVITE) is answered with them or
// refused, never switched under running media (new SRTP keys are fine).
func (l *Local) Fix(n Negotiated) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.Policy.Codecs = []string{n.Codec.Name}
	if n.SRTP != nil {
		l.Policy.SRTP = SRTPRequired
	} else {
		l.Policy.SRTP = SRTPDisabled
	}
}

// Offer builds our offer (for an INVITE without SDP, or a re-INVITE of our
// own): the Policy's codecs in its order and telephone-event, ptime 20, in
// direction dir; with SRTP required RTP/SAVP with a=crypto, with SRTP
// optional RTP/AVP with a=crypto (best effort), else plain RTP/AVP.
func (l *Local) Offer(dir Direction) []byte {
	p := l.policy()
	pt := l.DTMFPayloadType
	if pt == 0 {
		pt = DefaultDTMFPayloadType
	}
	proto := "RTP/AVP"
	if p.SRTP == SRTPRequired {
		proto = "RTP/SAVP"
	}
	var codecs []Codec
	for _, name := range p.codecs() {
		for _, c := range []Codec{PCMU, PCMA, G722, Opus} {
			if c.Name == name {
				codecs = append(codecs, c)
			}
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "m=audio %d %s", l.Port, proto)
	for _, c := range codecs {
		fmt.Fprintf(&b, " %d", c.PayloadType)
	}
	fmt.Fprintf(&b, " %d\r\n", pt)
	for _, c := range codecs {
		writeCodec(&b, c)
	}
	fmt.Fprintf(&b, "a=rtpmap:%d telephone-event/8000\r\n", pt)
	fmt.Fprintf(&b, "a=fmtp:%d 0-16\r\n", pt)
	var offered []Crypto
	if p.SRTP != SRTPDisabled {
		for i, suite := range p.suites() {
			c := Crypto{Tag: i + 1, Suite: suite, Key: l.keyFor(suite)}
			offered = append(offered, c)
			b.WriteString(c.line())
		}
	}
	l.mu.Lock()
	l.offered = offered
	l.mu.Unlock()
	l.mediaTail(&b, dir)
	return l.finish(b.String())
}

// ParseAnswer negotiates the far end's answer to our Offer: a codec we
// offered, and SRTP with a suite and tag of ours.
func (l *Local) ParseAnswer(answer []byte) (Negotiated, error) {
	s, err := Parse(answer)
	if err != nil {
		return Negotiated{}, err
	}
	p := l.policy()
	l.mu.Lock()
	offered := l.offered
	l.mu.Unlock()
	if offered == nil {
		offered = []Crypto{} // we offered none: any a=crypto in the answer is not ours
	}
	return negotiate(s, &p, false, offered, l.keyFor)
}

// OpusFmtp is what we ask of an Opus sender (RFC 7587 §6.1): we play at
// 16 kHz mono. No useinbandfec=1: we decode packets as they arrive and
// conceal losses in the jitter buffer, so FEC bits would be wasted.
const OpusFmtp = "maxplaybackrate=16000;sprop-maxcapturerate=16000;stereo=0;sprop-stereo=0"

// writeCodec writes a codec's rtpmap, and its fmtp for Opus.
func writeCodec(b *strings.Builder, c Codec) {
	if c.Channels > 1 {
		fmt.Fprintf(b, "a=rtpmap:%d %s/%d/%d\r\n", c.PayloadType, c.Name, c.ClockRate, c.Channels)
	} else {
		fmt.Fprintf(b, "a=rtpmap:%d %s/%d\r\n", c.PayloadType, c.Name, c.ClockRate)
	}
	if c.Name == "opus" {
		fmt.Fprintf(b, "a=fmtp:%d %s\r\n", c.PayloadType, OpusFmtp)
	}
}

func (l *Local) mediaTail(b *strings.Builder, dir Direction) {
	fmt.Fprintf(b, "a=ptime:%d\r\n", SendPtime/time.Millisecond)
	fmt.Fprintf(b, "a=rtcp:%d\r\n", l.Port+1)
	fmt.Fprintf(b, "a=%s\r\n", dir)
}

// build writes the answer: our audio stream at the negotiated m= line, every
// other m= line rejected with port 0.
func (l *Local) build(s *Session, n Negotiated) []byte {
	var b strings.Builder
	for i := range s.Media {
		m := &s.Media[i]
		if i != n.MediaIndex {
			formats := m.Formats
			if len(formats) == 0 {
				formats = []string{"0"}
			}
			fmt.Fprintf(&b, "m=%s 0 %s %s\r\n", m.Type, m.Proto, strings.Join(formats, " "))
			continue
		}
		c := n.Codec
		fmt.Fprintf(&b, "m=audio %d %s %d", l.Port, m.Proto, c.PayloadType)
		if n.HasDTMF {
			fmt.Fprintf(&b, " %d", n.DTMF.PayloadType)
		}
		b.WriteString("\r\n")
		writeCodec(&b, c)
		if n.HasDTMF {
			fmtp := n.DTMF.Fmtp
			if fmtp == "" {
				fmtp = "0-16"
			}
			fmt.Fprintf(&b, "a=rtpmap:%d telephone-event/8000\r\n", n.DTMF.PayloadType)
			fmt.Fprintf(&b, "a=fmtp:%d %s\r\n", n.DTMF.PayloadType, fmtp)
		}
		if n.SRTP != nil {
			c := Crypto{Tag: n.SRTP.tag, Suite: n.SRTP.Suite, Key: n.SRTP.Local}
			b.WriteString(c.line())
		}
		l.mediaTail(&b, n.Direction)
	}
	return l.finish(b.String())
}

// finish adds the session lines, bumping the version if the media changed.
func (l *Local) finish(media string) []byte {
	ipv := "IP4"
	if l.Addr.Is6() && !l.Addr.Is4In6() {
		ipv = "IP6"
	}
	addr := l.Addr.Unmap().String()
	body := "s=cxco\r\nc=IN " + ipv + " " + addr + "\r\nt=0 0\r\n" + media
	l.mu.Lock()
	if l.last != "" && l.last != body {
		l.version++
	}
	l.last = body
	ver := l.version
	l.mu.Unlock()
	return []byte("v=0\r\no=cxco " + strconv.FormatUint(l.sessionID, 10) + " " + strconv.FormatUint(ver, 10) +
		" IN " + ipv + " " + addr + "\r\n" + body)
}
