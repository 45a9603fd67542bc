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
	// It runs in the read loop for every INVITE over the call rate: one allocation,
	// the response, and no copy of the request (BenchmarkStatelessReject).
	head, _, _ := bytes.Cut(data, []byte("\r\n\r\n"))
	sep := []byte("\r\n")
	if !bytes.Contains(head, sep) {
		sep = sep[1:]
	}
	first, rest, ok := bytes.Cut(head, sep)
	if !ok {
		return nil
	}
	if f := bytes.Fields(first); len(f) < 2 || bytes.HasPrefix(first, []byte("SIP/")) || bytes.HasPrefix(first, []byte("sip/")) {
		return nil // a response, or not SIP at all
	}
	var via, cseq, callID, to bool
	b := make([]byte, 0, len(head)+64)
	b = append(b, "SIP/2.0 "...)
	b = strconv.AppendInt(b, int64(code), 10)
	b = append(b, ' ')
	b = append(b, reason...)
	b = append(b, "\r\n"...)
	for len(rest) > 0 || ok {
		var l []byte
		l, rest, ok = bytes.Cut(rest, sep)
		name, _, found := bytes.Cut(l, []byte(":"))
		if !found {
			continue
		}
		name = bytes.TrimSpace(name)
		switch {
		case eqFold(name, "via", "v"):
			via = true
		case eqFold(name, "from", "f"):
		case eqFold(name, "to", "t"):
			to = true
			b = append(b, l...)
			if !containsFold(l, ";tag=") {
				b = append(b, ";tag=cxco-400"...)
			}
			b = append(b, "\r\n"...)
			continue
		case eqFold(name, "call-id", "i"):
			callID = true
		case eqFold(name, "cseq", ""):
			cseq = true
		default:
			continue
		}
		b = append(b, l...)
		b = append(b, "\r\n"...)
	}
	if !via || !cseq || !callID || !to {
		return nil
	}
	for _, h := range extra {
		b = append(b, h...)
		b = append(b, "\r\n"...)
	}
	return append(b, "Content-Length: 0\r\n\r\n"...)
}

// eqFold: name is long or compact (a header name's two forms), in any case.
func eqFold(name []byte, long, compact string) bool {
	return bytes.EqualFold(name, []byte(long)) || (compact != "" && bytes.EqualFold(name, []byte(compact)))
}

// containsFold: s contains the lower-case ASCII sub, in any case.
func containsFold(s []byte, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if bytes.EqualFold(s[i:i+len(sub)], []byte(sub)) {
			return true
		}
	}
	return false
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
