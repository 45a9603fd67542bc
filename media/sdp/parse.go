// Package sdp is SDP offer/answer (RFC 4566, RFC 3264) for the gateway's
// one audio stream: PCMU and PCMA (RFC 3551), G.722 (G722/8000, RFC 3551
// §4.5.2) and Opus (opus/48000/2, RFC 7587) with telephone-event/8000
// (RFC 4733), a=ptime, a=rtcp (RFC 3605), direction attributes, old-style
// hold (c=0.0.0.0), and SRTP keyed with SDES (RTP/SAVP and a=crypto,
// RFC 4568) under a trunk's policy.
//
// Parse reads an offer or answer tolerantly (line order is not enforced,
// unknown lines are ignored). Negotiate picks what we use from an offer;
// Local builds answers and offers and tracks the o= line's version.
package sdp

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Direction is a stream's direction attribute.
type Direction uint8

// Directions.
const (
	SendRecv Direction = iota
	SendOnly
	RecvOnly
	Inactive
)

var dirNames = [...]string{"sendrecv", "sendonly", "recvonly", "inactive"}

func (d Direction) String() string {
	if int(d) < len(dirNames) {
		return dirNames[d]
	}
	return "unknown"
}

// Reverse is the direction the other side answers with: sendonly and
// recvonly swap.
func (d Direction) Reverse() Direction {
	switch d {
	case SendOnly:
		return RecvOnly
	case RecvOnly:
		return SendOnly
	}
	return d
}

// Sends reports whether a side with this direction sends media.
func (d Direction) Sends() bool { return d == SendRecv || d == SendOnly }

// Receives reports whether a side with this direction receives media.
func (d Direction) Receives() bool { return d == SendRecv || d == RecvOnly }

func parseDirection(s string) (Direction, bool) {
	for i, n := range dirNames {
		if s == n {
			return Direction(i), true
		}
	}
	return 0, false
}

// Codec is one RTP payload format.
type Codec struct {
	PayloadType uint8
	Name        string // encoding name as in a=rtpmap, e.g. "PCMU"
	ClockRate   int
	Channels    int    // 0 when not given
	Fmtp        string // a=fmtp parameters
}

// The codecs we support, with the payload types of our offers.
var (
	PCMU = Codec{PayloadType: 0, Name: "PCMU", ClockRate: 8000}
	PCMA = Codec{PayloadType: 8, Name: "PCMA", ClockRate: 8000}
	// G722 is 16 kHz audio on an 8000 Hz RTP clock (RFC 3551 §4.5.2).
	G722 = Codec{PayloadType: 9, Name: "G722", ClockRate: 8000}
	// Opus is always opus/48000/2 in SDP whatever it carries (RFC 7587 §7).
	Opus = Codec{PayloadType: 111, Name: "opus", ClockRate: 48000, Channels: 2}
)

// static RTP/AVP payload types (RFC 3551) we may meet without a=rtpmap.
var static = map[uint8]Codec{
	0:  PCMU,
	3:  {PayloadType: 3, Name: "GSM", ClockRate: 8000},
	4:  {PayloadType: 4, Name: "G723", ClockRate: 8000},
	8:  PCMA,
	9:  {PayloadType: 9, Name: "G722", ClockRate: 8000},
	13: {PayloadType: 13, Name: "CN", ClockRate: 8000},
	18: {PayloadType: 18, Name: "G729", ClockRate: 8000},
}

// Origin is the o= line.
type Origin struct {
	Username       string
	SessionID      string
	SessionVersion string
	NetType        string
	AddrType       string
	Address        string
}

// Media is one m= section with session-level defaults applied.
type Media struct {
	Type     string // audio, video, ...
	Port     int
	NumPorts int
	Proto    string
	Formats  []string
	// Conn is the effective connection address (media c=, else session
	// c=); invalid if there is none or it is not an IP address.
	Conn netip.Addr
	// Codecs are the RTP formats resolved through a=rtpmap and the static
	// payload types, in offer order; formats we cannot resolve are left out.
	Codecs    []Codec
	Ptime     time.Duration // a=ptime; 0 if absent
	MaxPtime  time.Duration // a=maxptime; 0 if absent
	RTCP      netip.AddrPort
	HasRTCP   bool      // a=rtcp present; RTCP's address is Conn when the line has none
	Direction Direction // media level, else session level, else sendrecv
	// Crypto are the a=crypto lines we could use, in the sender's order of
	// preference (lines with other suites, MKIs or session parameters are
	// left out).
	Crypto []Crypto

	rtpmaps map[uint8]Codec
	fmtps   map[uint8]string
	dirSet  bool
	connSet bool
	rtcpRaw string
}

// Session is a parsed SDP body.
type Session struct {
	Origin    Origin
	Name      string
	Conn      netip.Addr // session-level c=
	Direction Direction  // session-level direction; sendrecv if absent
	Media     []Media
}

// Parse parses an SDP body. It returns an error wrapping ErrMalformed if the
// body is not SDP.
func Parse(b []byte) (*Session, error) {
	s := &Session{}
	var (
		cur   *Media
		seenV bool
		seenO bool
	)
	text := string(b)
	for len(text) > 0 {
		var line string
		if i := strings.IndexByte(text, '\n'); i >= 0 {
			line, text = text[:i], text[i+1:]
		} else {
			line, text = text, ""
		}
		line = strings.TrimRight(line, "\r \t")
		if line == "" {
			continue
		}
		if len(line) < 2 || line[1] != '=' || line[0] < 'a' || line[0] > 'z' {
			return nil, fmt.Errorf("%w: line %q", ErrMalformed, truncate(line))
		}
		val := line[2:]
		switch line[0] {
		case 'v':
			if val != "0" {
				return nil, fmt.Errorf("%w: version %q", ErrMalformed, truncate(val))
			}
			seenV = true
		case 'o':
			f := strings.Fields(val)
			if len(f) != 6 {
				return nil, fmt.Errorf("%w: origin %q", ErrMalformed, truncate(val))
			}
			s.Origin = Origin{f[0], f[1], f[2], f[3], f[4], f[5]}
			seenO = true
		case 's':
			if cur == nil {
				s.Name = val
			}
		case 'c':
			addr, err := parseConn(val)
			if err != nil {
				return nil, err
			}
			if cur == nil {
				s.Conn = addr
			} else {
				cur.Conn = addr
				cur.connSet = true
			}
		case 'm':
			m, err := parseMLine(val)
			if err != nil {
				return nil, err
			}
			s.Media = append(s.Media, m)
			cur = &s.Media[len(s.Media)-1]
		case 'a':
			name, arg, _ := strings.Cut(val, ":")
			if d, ok := parseDirection(name); ok {
				if cur == nil {
					s.Direction = d
				} else {
					cur.Direction = d
					cur.dirSet = true
				}
				continue
			}
			if cur == nil {
				continue
			}
			if err := cur.attr(name, arg); err != nil {
				return nil, err
			}
		}
	}
	if !seenV || !seenO {
		return nil, fmt.Errorf("%w: missing v= or o=", ErrMalformed)
	}
	for i := range s.Media {
		m := &s.Media[i]
		if !m.connSet {
			m.Conn = s.Conn
		}
		if !m.dirSet {
			m.Direction = s.Direction
		}
		for _, f := range m.Formats {
			pt, err := strconv.ParseUint(f, 10, 7)
			if err != nil {
				continue // not an RTP payload type
			}
			c, ok := m.rtpmaps[uint8(pt)]
			if !ok {
				c, ok = static[uint8(pt)]
			}
			if !ok {
				continue
			}
			c.Fmtp = m.fmtps[uint8(pt)]
			m.Codecs = append(m.Codecs, c)
		}
		if m.rtcpRaw != "" {
			if err := m.parseRTCP(); err != nil {
				return nil, err
			}
		}
	}
	return s, nil
}

func truncate(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

// parseConn parses "IN IP4 addr[/ttl[/n]]". An address that is not an IP
// (a host name) yields an invalid Addr.
func parseConn(val string) (netip.Addr, error) {
	f := strings.Fields(val)
	if len(f) != 3 || f[0] != "IN" || (f[1] != "IP4" && f[1] != "IP6") {
		return netip.Addr{}, fmt.Errorf("%w: connection %q", ErrMalformed, truncate(val))
	}
	host, _, _ := strings.Cut(f[2], "/")
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}, nil
	}
	if (f[1] == "IP4") != a.Is4() {
		return netip.Addr{}, fmt.Errorf("%w: connection %q: address family", ErrMalformed, truncate(val))
	}
	return a, nil
}

func parseMLine(val string) (Media, error) {
	f := strings.Fields(val)
	if len(f) < 4 {
		return Media{}, fmt.Errorf("%w: media %q", ErrMalformed, truncate(val))
	}
	m := Media{Type: f[0], Proto: f[2], Formats: f[3:], NumPorts: 1}
	port, num, hasNum := strings.Cut(f[1], "/")
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return Media{}, fmt.Errorf("%w: media port %q", ErrMalformed, truncate(f[1]))
	}
	m.Port = int(p)
	if hasNum {
		n, err := strconv.ParseUint(num, 10, 16)
		if err != nil || n == 0 {
			return Media{}, fmt.Errorf("%w: media port count %q", ErrMalformed, truncate(f[1]))
		}
		m.NumPorts = int(n)
	}
	return m, nil
}

func (m *Media) attr(name, arg string) error {
	switch name {
	case "rtpmap":
		c, ok := parseRtpmap(arg)
		if !ok {
			return nil // be liberal: a broken rtpmap (e.g. "31 LPC" in RFC 4475) leaves its format unresolved (and unused)
		}
		if m.rtpmaps == nil {
			m.rtpmaps = make(map[uint8]Codec)
		}
		m.rtpmaps[c.PayloadType] = c
	case "fmtp":
		pt, rest, _ := strings.Cut(arg, " ")
		n, err := strconv.ParseUint(pt, 10, 7)
		if err != nil {
			return nil // fmtp for a non-RTP format: not ours
		}
		if m.fmtps == nil {
			m.fmtps = make(map[uint8]string)
		}
		m.fmtps[uint8(n)] = strings.TrimSpace(rest)
	case "ptime", "maxptime":
		v, err := strconv.ParseFloat(strings.TrimSpace(arg), 64)
		if err != nil || v < 0 || v > 10000 {
			return nil // ignore a nonsensical value rather than fail the call
		}
		d := time.Duration(v * float64(time.Millisecond))
		if name == "ptime" {
			m.Ptime = d
		} else {
			m.MaxPtime = d
		}
	case "rtcp":
		m.rtcpRaw = strings.TrimSpace(arg)
	case "crypto":
		if c, ok := parseCrypto(arg); ok && len(m.Crypto) < 16 {
			m.Crypto = append(m.Crypto, c)
		}
	}
	return nil
}

// parseRtpmap reads "PT NAME/RATE[/CHANNELS]"; false if it is broken.
func parseRtpmap(arg string) (Codec, bool) {
	pt, rest, ok := strings.Cut(arg, " ")
	n, err := strconv.ParseUint(pt, 10, 7)
	if !ok || err != nil {
		return Codec{}, false
	}
	parts := strings.Split(strings.TrimSpace(rest), "/")
	if len(parts) < 2 || parts[0] == "" {
		return Codec{}, false
	}
	rate, err := strconv.ParseUint(parts[1], 10, 31)
	if err != nil {
		return Codec{}, false
	}
	c := Codec{PayloadType: uint8(n), Name: parts[0], ClockRate: int(rate)}
	if len(parts) > 2 {
		ch, err := strconv.ParseUint(parts[2], 10, 8)
		if err != nil {
			return Codec{}, false
		}
		c.Channels = int(ch)
	}
	return c, true
}

// parseRTCP reads "a=rtcp:port [IN IP4 addr]" (RFC 3605).
func (m *Media) parseRTCP() error {
	f := strings.Fields(m.rtcpRaw)
	p, err := strconv.ParseUint(f[0], 10, 16)
	if err != nil {
		return fmt.Errorf("%w: rtcp %q", ErrMalformed, truncate(m.rtcpRaw))
	}
	addr := m.Conn
	if len(f) == 4 {
		a, err := parseConn(strings.Join(f[1:], " "))
		if err != nil {
			return err
		}
		if a.IsValid() {
			addr = a
		}
	} else if len(f) != 1 {
		return fmt.Errorf("%w: rtcp %q", ErrMalformed, truncate(m.rtcpRaw))
	}
	m.RTCP = netip.AddrPortFrom(addr, uint16(p))
	m.HasRTCP = true
	return nil
}
