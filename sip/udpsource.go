package sip

import (
	"net"
	"net/netip"
	"strings"
	"time"

	gsip "github.com/emiago/sipgo/sip"
)

// fromListener makes a request we send as a UAC over UDP leave from our
// listening socket, the port our Via and Contact advertise, instead of a socket
// sipgo would open on an ephemeral port: carriers allow a trunk by IP and port,
// and symmetric signalling through NATs and SBCs (RFC 3581 rport) answers to
// where a request came from. sipgo sends a request whose Laddr is a pooled
// connection's local address on that connection (ClientRequestConnection); its
// UDP listeners are pooled under their local address while they serve. ACK and
// CANCEL of an INVITE copy its Laddr; a dialog's BYE does not (byeFromListener).
//
// local is the address the request advertises (its Via's host): the listener of
// its family is used. A request over TCP or TLS is left alone (a stream dials its
// own connection), and so is one when no listener of that family is served.
func (s *Server) fromListener(req *gsip.Request, local netip.Addr) {
	if !strings.EqualFold(req.Transport(), "udp") {
		return
	}
	if a, ok := s.udpListener(local); ok {
		req.Laddr = a
	}
}

// awaitUDPServed waits (briefly: it is a goroutine's first step) until sipgo
// has pooled every UDP listener, so that the first requests we send (the
// registrations, right after Listen) leave from them too.
func (s *Server) awaitUDPServed() {
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		all := true
		for _, c := range s.conns {
			all = all && s.udpServed(c.LocalAddr().String())
		}
		if all {
			return
		}
	}
	s.log.Warn("the UDP listeners are not served yet: requests we send may leave from other ports for a while")
}

// udpListener is the served UDP listener for local's family.
func (s *Server) udpListener(local netip.Addr) (gsip.Addr, bool) {
	v4 := !local.IsValid() || local.Unmap().Is4()
	for _, c := range s.conns {
		la, ok := c.LocalAddr().(*net.UDPAddr)
		if !ok || (la.IP.To4() != nil) != v4 {
			continue
		}
		// Only while sipgo serves it: otherwise it would bind a new socket to
		// the listener's address and fail.
		if !s.udpServed(la.String()) {
			return gsip.Addr{}, false
		}
		return gsip.Addr{IP: la.IP, Port: la.Port}, true
	}
	return gsip.Addr{}, false
}

// udpServed reports whether sipgo has pooled the UDP listener on addr (it does
// while it serves it).
func (s *Server) udpServed(addr string) bool {
	if s.ua == nil {
		return false
	}
	pool := s.ua.TransportLayer().Pool("udp")
	if pool == nil {
		return false
	}
	conn := pool.Get(addr)
	if conn == nil {
		return false
	}
	_, _ = conn.TryClose() // Get counted a reference
	return true
}
