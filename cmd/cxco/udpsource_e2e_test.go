package main

import (
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cxco/gateway/cmd/cxco/cxcotest"
)

// udpCarrier is a carrier's side of a UDP trunk, written from RFC 3261 as a UA
// server: it reads every datagram with its source address and answers by the
// called number (To's user): ...81 answers (100, then 200 with an SDP answer),
// ...82 is busy (486), ...83 rings (180) until CANCELled (200 to the CANCEL, 487
// to the INVITE); a REGISTER gets 200 with the binding for 60 s, a BYE 200. It
// answers to the datagram's source (RFC 3581 symmetric response routing, as a
// NAT or an SBC does).
type udpCarrier struct {
	t    *testing.T
	conn net.PacketConn
	// leg is where the answered call's Contact points: another port than the
	// one the INVITE went to (an SBC's media-side leg), so the BYE goes there.
	leg net.PacketConn
	rtp net.PacketConn // absorbs the gateway's RTP
	got chan udpMsg

	mu      sync.Mutex
	invites map[string]string // Call-ID -> the INVITE, for the 487 after a CANCEL
}

type udpMsg struct {
	method string // or "SIP/2.0 <code>" for a response
	from   *net.UDPAddr
	to     int // the carrier's port it came to
	raw    string
}

func startUDPCarrier(t *testing.T) *udpCarrier {
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	leg, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rtp, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &udpCarrier{t: t, conn: conn, leg: leg, rtp: rtp, got: make(chan udpMsg, 256), invites: map[string]string{}}
	t.Cleanup(func() { conn.Close(); leg.Close(); rtp.Close() })
	go func() { // RTP: read and dropped
		b := make([]byte, 2048)
		for {
			if _, _, err := rtp.ReadFrom(b); err != nil {
				return
			}
		}
	}()
	go c.serve(conn)
	go c.serve(leg)
	return c
}

func (c *udpCarrier) port() int { return c.conn.LocalAddr().(*net.UDPAddr).Port }

func (c *udpCarrier) serve(conn net.PacketConn) {
	b := make([]byte, 65535)
	for {
		n, from, err := conn.ReadFrom(b)
		if err != nil {
			return
		}
		raw := string(b[:n])
		if strings.TrimSpace(raw) == "" {
			continue // keep-alive
		}
		first, _, _ := strings.Cut(raw, "\r\n")
		method, _, _ := strings.Cut(first, " ")
		if method == "SIP/2.0" {
			method = first[:len("SIP/2.0 200")]
		}
		src := from.(*net.UDPAddr)
		select {
		case c.got <- udpMsg{method: method, from: src, to: conn.LocalAddr().(*net.UDPAddr).Port, raw: raw}:
		default:
		}
		reply := func(req string, code int, reason, tag, extra, body string) {
			c.reply(conn, src, req, code, reason, tag, extra, body)
		}
		switch method {
		case "REGISTER":
			contact := sipHeaderOf(raw, "Contact", "m")
			if i := strings.Index(contact, ";expires="); i >= 0 {
				contact = contact[:i]
			}
			reply(raw, 200, "OK", "", "Contact: "+contact+";expires=60\r\nExpires: 60\r\n", "")
		case "INVITE":
			c.mu.Lock()
			c.invites[sipHeaderOf(raw, "Call-ID", "i")] = raw
			c.mu.Unlock()
			reply(raw, 100, "Trying", "", "", "")
			user := sipHeaderOf(raw, "To", "t")
			switch {
			case strings.Contains(user, "27215550181"):
				sdp := fmt.Sprintf("v=0\r\no=carrier 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio %d RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n",
					c.rtp.LocalAddr().(*net.UDPAddr).Port)
				reply(raw, 200, "OK", "ans", fmt.Sprintf("Contact: <sip:callee@127.0.0.1:%d>\r\nContent-Type: application/sdp\r\n", c.leg.LocalAddr().(*net.UDPAddr).Port), sdp)
			case strings.Contains(user, "27215550182"):
				reply(raw, 486, "Busy Here", "busy", "", "")
			default:
				reply(raw, 180, "Ringing", "ring", fmt.Sprintf("Contact: <sip:callee@127.0.0.1:%d>\r\n", c.port()), "")
			}
		case "CANCEL":
			reply(raw, 200, "OK", "ring", "", "")
			c.mu.Lock()
			inv := c.invites[sipHeaderOf(raw, "Call-ID", "i")]
			c.mu.Unlock()
			if inv != "" {
				reply(inv, 487, "Request Terminated", "ring", "", "")
			}
		case "BYE":
			reply(raw, 200, "OK", "", "", "")
		}
	}
}

// reply sends a response to req: its Vias, From, Call-ID and CSeq, its To with
// our tag (unless it has one or this is a 100).
func (c *udpCarrier) reply(conn net.PacketConn, to *net.UDPAddr, req string, code int, reason, tag, extra, body string) {
	head, _, _ := strings.Cut(req, "\r\n\r\n")
	var b strings.Builder
	fmt.Fprintf(&b, "SIP/2.0 %d %s\r\n", code, reason)
	for _, line := range strings.Split(head, "\r\n")[1:] {
		name, _, _ := strings.Cut(line, ":")
		switch strings.ToLower(strings.TrimSpace(name)) {
		case "via", "v", "from", "f", "call-id", "i", "cseq":
			b.WriteString(line + "\r\n")
		case "to", "t":
			if code > 100 && tag != "" && !strings.Contains(line, ";tag=") {
				line += ";tag=" + tag
			}
			b.WriteString(line + "\r\n")
		}
	}
	b.WriteString(extra)
	fmt.Fprintf(&b, "Content-Length: %d\r\n\r\n%s", len(body), body)
	if _, err := conn.WriteTo([]byte(b.String()), to); err != nil {
		c.t.Errorf("carrier: %v", err)
	}
}

// next waits for the next request of method (others are skipped) and returns it.
func (c *udpCarrier) next(method string, d time.Duration) udpMsg {
	c.t.Helper()
	deadline := time.After(d)
	for {
		select {
		case m := <-c.got:
			if m.method == method {
				return m
			}
		case <-deadline:
			c.t.Fatalf("the carrier got no %s in %s", method, d)
		}
	}
}

func sipHeaderOf(msg, name, compact string) string {
	head, _, _ := strings.Cut(msg, "\r\n\r\n")
	for _, line := range strings.Split(head, "\r\n")[1:] {
		k, v, ok := strings.Cut(line, ":")
		if k = strings.TrimSpace(k); ok && (strings.EqualFold(k, name) || strings.EqualFold(k, compact)) {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// TestUDPRequestsLeaveFromListeningPort: every request the gateway sends as a UAC
// over UDP leaves from its SIP listening port, the port its Via and Contact
// advertise, not from an ephemeral one: carriers allow a trunk by IP and port,
// and NATs and SBCs answer to where a request came from. The carrier (a Go UDP
// peer) answers to the datagram's source, so the answers come back to the
// listening socket, and they must still match their transactions: the REGISTER
// is registered, the answered call's 200 gets its ACK and the call is up until
// our BYE, the busy call ends busy (486, ACKed), and the CANCEL of a ringing call
// ends it cancelled (487, ACKed).
func TestUDPRequestsLeaveFromListeningPort(t *testing.T) {
	carrier := startUDPCarrier(t)
	g := cxcotest.StartGateway(t, cxcotest.GatewayOptions{Args: []string{"--register-retry", "200ms"}})
	tn := g.NewTenant("UDP source")
	g.AddNumber("+27215550180", "ZA", false)
	agentID, _ := g.PublishAgent(tn, "Caller", "ZA", nil)
	g.Must(200, "PUT", fmt.Sprintf("/api/agency/companies/%d", tn.CompanyID), g.AgencyKey,
		map[string]any{"outbound_limits": map[string]any{"max_concurrent_calls": 10, "calls_per_second": 100}})
	g.Must(201, "POST", "/api/agency/trunks", g.AgencyKey, map[string]any{"name": "carrier", "allow": []string{"127.0.0.1/32"},
		"uri":      fmt.Sprintf("sip:127.0.0.1:%d", carrier.port()),
		"username": "gw-account", "registration": map[string]any{"enabled": true, "expires": 60, "registrars": []string{fmt.Sprintf("sip:127.0.0.1:%d", carrier.port())}}})
	fromListener := func(m udpMsg) {
		t.Helper()
		if m.from.Port != g.SIPPort {
			t.Fatalf("%s left from port %d; the gateway listens on %d (Via: %s)", m.method, m.from.Port, g.SIPPort, sipHeaderOf(m.raw, "Via", "v"))
		}
		if via := sipHeaderOf(m.raw, "Via", "v"); !strings.Contains(via, fmt.Sprintf(":%d", g.SIPPort)) {
			t.Fatalf("%s's Via %s does not advertise port %d", m.method, via, g.SIPPort)
		}
	}

	fromListener(carrier.next("REGISTER", 15*time.Second))
	cxcotest.Eventually(t, 10*time.Second, "the trunk registered", func() bool {
		_, list := g.Do("GET", "/api/agency/registrations", g.AgencyKey, nil)
		regs, _ := list.([]any)
		return len(regs) == 1 && regs[0].(map[string]any)["state"] == "registered"
	})

	calls := fmt.Sprintf("/api/agents/%d/calls", agentID)
	place := func(to string) string {
		c := g.Must(201, "POST", calls, tn.UserKey, map[string]any{"to": to})
		return fmt.Sprintf("/api/conversations/%.0f", c["id"].(float64))
	}
	status := func(conv, want string) map[string]any {
		t.Helper()
		var c map[string]any
		cxcotest.Eventually(t, 20*time.Second, conv+" "+want, func() bool {
			c = g.Must(200, "GET", conv, tn.UserKey, nil)
			return c["status"] == want
		})
		return c
	}

	// Answered: INVITE, ACK and our BYE from the listening port.
	conv := place("+27215550181")
	fromListener(carrier.next("INVITE", 15*time.Second))
	fromListener(carrier.next("ACK", 10*time.Second))
	status(conv, "in_progress")
	if code, v := g.Do("DELETE", conv, tn.UserKey, nil); code != 204 {
		t.Fatalf("DELETE: %d %v", code, v)
	}
	bye := carrier.next("BYE", 10*time.Second)
	if bye.to != carrier.leg.LocalAddr().(*net.UDPAddr).Port {
		t.Fatalf("the BYE went to port %d, not to the callee's Contact", bye.to)
	}
	fromListener(bye)
	if c := status(conv, "completed"); c["end_reason"] != "api_hangup" || c["answered_at"] == nil {
		t.Fatalf("answered call: %v", c)
	}

	// Busy: the 486 matches the INVITE's transaction, which ACKs it.
	conv = place("+27215550182")
	fromListener(carrier.next("INVITE", 15*time.Second))
	fromListener(carrier.next("ACK", 10*time.Second))
	if c := status(conv, "busy"); c["sip_status"] != 486.0 {
		t.Fatalf("busy call: %v", c)
	}

	// Ringing, then cancelled through the API: the CANCEL leaves from the listening port too.
	conv = place("+27215550183")
	fromListener(carrier.next("INVITE", 15*time.Second))
	status(conv, "ringing")
	if code, v := g.Do("DELETE", conv, tn.UserKey, nil); code != 204 {
		t.Fatalf("DELETE: %d %v", code, v)
	}
	fromListener(carrier.next("CANCEL", 10*time.Second))
	fromListener(carrier.next("ACK", 10*time.Second))
	if c := status(conv, "cancelled"); c["sip_status"] != 487.0 {
		t.Fatalf("cancelled call: %v", c)
	}
}
