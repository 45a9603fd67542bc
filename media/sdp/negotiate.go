package sdp

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"net/netip"
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
	Codec Codec // PCMU or PCMA, with the payload type the far end uses
	// DTMF is telephone-event/8000 with the far end's payload type;
	// HasDTMF is false when it was not offered.
	DTMF    Codec
	HasDTMF bool
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
}

func supported(c Codec) (Codec, bool) {
	if c.ClockRate != 8000 || (c.Channels != 0 && c.Channels != 1) {
		return Codec{}, false
	}
	switch {
	case strings.EqualFold(c.Name, "PCMU"):
		return Codec{PayloadType: c.PayloadType, Name: "PCMU", ClockRate: 8000}, true
	case strings.EqualFold(c.Name, "PCMA"):
		return Codec{PayloadType: c.PayloadType, Name: "PCMA", ClockRate: 8000}, true
	}
	return Codec{}, false
}

func isDTMF(c Codec) bool {
	return strings.EqualFold(c.Name, "telephone-event") && c.ClockRate == 8000
}

func rtpProto(p string) bool { return p == "RTP/AVP" || p == "RTP/AVPF" }

// Negotiate picks, from an offer (or an answer to our offer), the first
// audio stream over RTP/AVP that carries PCMU or PCMA at 8000 Hz; the first
// such codec in the stream's order wins. It returns ErrNoCommonCodec if
// there is none and ErrMalformed if the chosen stream has no connection
// address.
func Negotiate(s *Session) (Negotiated, error) {
	for i := range s.Media {
		m := &s.Media[i]
		if m.Type != "audio" || m.Port == 0 || !rtpProto(m.Proto) {
			continue
		}
		n := Negotiated{MediaIndex: i}
		found := false
		for _, c := range m.Codecs {
			if sc, ok := supported(c); ok && !found {
				n.Codec, found = sc, true
			}
			if isDTMF(c) && !n.HasDTMF {
				n.DTMF = Codec{PayloadType: c.PayloadType, Name: "telephone-event", ClockRate: 8000, Fmtp: c.Fmtp}
				n.HasDTMF = true
			}
		}
		if !found {
			continue
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

	mu        sync.Mutex
	sessionID uint64
	version   uint64
	last      string // body of the last SDP sent, without the o= line
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

// Answer parses an offer, negotiates it and builds our answer. Errors wrap
// ErrMalformed or ErrNoCommonCodec.
func (l *Local) Answer(offer []byte) ([]byte, Negotiated, error) {
	s, err := Parse(offer)
	if err != nil {
		return nil, Negotiated{}, err
	}
	n, err := Negotiate(s)
	if err != nil {
		return nil, Negotiated{}, err
	}
	return l.build(s, n), n, nil
}

// Offer builds our offer (for an INVITE without SDP, or a re-INVITE of our
// own): PCMU, PCMA and telephone-event, ptime 20, in direction dir.
func (l *Local) Offer(dir Direction) []byte {
	pt := l.DTMFPayloadType
	if pt == 0 {
		pt = DefaultDTMFPayloadType
	}
	var b strings.Builder
	fmt.Fprintf(&b, "m=audio %d RTP/AVP 0 8 %d\r\n", l.Port, pt)
	b.WriteString("a=rtpmap:0 PCMU/8000\r\n")
	b.WriteString("a=rtpmap:8 PCMA/8000\r\n")
	fmt.Fprintf(&b, "a=rtpmap:%d telephone-event/8000\r\n", pt)
	fmt.Fprintf(&b, "a=fmtp:%d 0-16\r\n", pt)
	l.mediaTail(&b, dir)
	return l.finish(b.String())
}

// ParseAnswer negotiates the far end's answer to our Offer.
func (l *Local) ParseAnswer(answer []byte) (Negotiated, error) {
	s, err := Parse(answer)
	if err != nil {
		return Negotiated{}, err
	}
	return Negotiate(s)
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
		fmt.Fprintf(&b, "a=rtpmap:%d %s/8000\r\n", c.PayloadType, c.Name)
		if n.HasDTMF {
			fmtp := n.DTMF.Fmtp
			if fmtp == "" {
				fmtp = "0-16"
			}
			fmt.Fprintf(&b, "a=rtpmap:%d telephone-event/8000\r\n", n.DTMF.PayloadType)
			fmt.Fprintf(&b, "a=fmtp:%d %s\r\n", n.DTMF.PayloadType, fmtp)
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
