package sip

import (
	"bytes"
	"net"
	"strconv"
	"strings"
)

// statelessReject builds a response (400 by default) to a request that sipgo cannot
// parse, from its raw lines: the Via, From, To, Call-ID and CSeq header lines are
// copied as they are. It returns nil when the datagram is not a request or lacks the
// lines a response needs (it is then dropped). RFC 3261 §8.2: a malformed request
// deserves a 400 if a response can be routed at all.
func statelessReject(data []byte, code int, reason string, extra ...string) []byte {
	head, _, _ := bytes.Cut(data, []byte("\r\n\r\n"))
	lines := strings.Split(string(head), "\r\n")
	if len(lines) < 2 {
		lines = strings.Split(string(head), "\n")
	}
	if len(lines) < 2 {
		return nil
	}
	start := strings.Fields(lines[0])
	if len(start) < 2 || strings.HasPrefix(lines[0], "SIP/") || strings.HasPrefix(lines[0], "sip/") {
		return nil // a response, or not SIP at all
	}
	var (
		b                     strings.Builder
		via, cseq, callID, to bool
	)
	b.WriteString("SIP/2.0 ")
	b.WriteString(strconv.Itoa(code))
	b.WriteString(" ")
	b.WriteString(reason)
	b.WriteString("\r\n")
	for _, l := range lines[1:] {
		name, _, ok := strings.Cut(l, ":")
		if !ok {
			continue
		}
		switch strings.ToLower(strings.TrimSpace(name)) {
		case "via", "v":
			via = true
		case "from", "f":
		case "to", "t":
			to = true
			if !strings.Contains(strings.ToLower(l), ";tag=") {
				l += ";tag=cxco-400"
			}
		case "call-id", "i":
			callID = true
		case "cseq":
			cseq = true
		default:
			continue
		}
		b.WriteString(l)
		b.WriteString("\r\n")
	}
	if !via || !cseq || !callID || !to {
		return nil
	}
	for _, h := range extra {
		b.WriteString(h)
		b.WriteString("\r\n")
	}
	b.WriteString("Content-Length: 0\r\n\r\n")
	return []byte(b.String())
}

// udpResponder sends stateless responses from the listener a request came in on.
type udpResponder struct {
	conns map[string]net.PacketConn // local address -> listener
}

func (u *udpResponder) send(local, remote net.Addr, msg []byte) {
	if c := u.conns[local.String()]; c != nil && msg != nil {
		_, _ = c.WriteTo(msg, remote)
	}
}

// unknownScheme: the request line's URI has a scheme other than sip, sips or tel.
func unknownScheme(data []byte) bool {
	line, _, _ := bytes.Cut(data, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) < 3 || !strings.HasPrefix(f[2], "SIP/") {
		return false
	}
	scheme, _, ok := strings.Cut(f[1], ":")
	if !ok || strings.HasPrefix(scheme, "<") {
		return false // no URI at all, or one in angle brackets: a syntax error (400)
	}
	switch strings.ToLower(scheme) {
	case "sip", "sips", "tel":
		return false
	}
	return true
}
