package sip

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/cxco/gateway/store"
)

func TestRedactSIP(t *testing.T) {
	const key = "WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz"
	const response = "7f4c2b1e9a0d3c5b8e6f1a2d4c7b9e0f"
	sdp := "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/SAVP 0\r\n" +
		"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:" + key + "|2^20|1:32\r\n" +
		"a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:" + key + "A;inline:" + key + "B\r\n" +
		"a=crypto:3 F8_128_HMAC_SHA1_80 srtp-key-method:" + key + "C\r\n" +
		"k=base64:" + key + "D\r\na=key-mgmt:mikey " + key + "E\r\na=rtpmap:0 PCMU/8000\r\n"
	msg := "INVITE sip:+27211234567@gw SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\r\n" +
		"Authorization: Digest username=\"trunk\", realm=\"cxco\", nonce=\"abc.def\", uri=\"sip:gw\", response=\"" + response + "\", algorithm=MD5\r\n" +
		"proxy-authorization: Digest username=\"p\",\r\n response=\"" + response + "P\", nonce=\"x\"\r\n" +
		"Call-ID: x@y\r\nCSeq: 2 INVITE\r\nContent-Type: application/sdp\r\nContent-Length: 10\r\n\r\n" + sdp
	out := redactSIP([]byte(msg))
	for _, secret := range []string{key, response} {
		if strings.Contains(out, secret) {
			t.Fatalf("%s is in the redacted message:\n%s", secret, out)
		}
	}
	for _, keep := range []string{
		"Authorization: Digest username=\"trunk\", realm=\"cxco\", [redacted]",
		"proxy-authorization: Digest username=\"p\", [redacted]",
		"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:[redacted]\r\n",
		"a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:[redacted];inline:[redacted]\r\n",
		"a=crypto:3 F8_128_HMAC_SHA1_80 [redacted]\r\n",
		"k=[redacted]\r\n", "a=key-mgmt:[redacted]\r\n",
		"a=rtpmap:0 PCMU/8000\r\n", "Call-ID: x@y\r\n", "CSeq: 2 INVITE\r\n", "m=audio 4000 RTP/SAVP 0\r\n",
	} {
		if !strings.Contains(out, keep) {
			t.Errorf("no %q in\n%s", keep, out)
		}
	}
	if !strings.HasPrefix(out, "INVITE sip:+27211234567@gw SIP/2.0\r\n") || !strings.HasSuffix(out, "a=rtpmap:0 PCMU/8000\r\n") {
		t.Fatalf("the message's shape changed:\n%s", out)
	}
	plain := "BYE sip:a@b SIP/2.0\r\nCall-ID: x\r\nContent-Length: 0\r\n\r\n"
	if got := redactSIP([]byte(plain)); got != plain {
		t.Fatalf("a message without secrets changed:\n%q", got)
	}
}

func TestFramer(t *testing.T) {
	a := "OPTIONS sip:a SIP/2.0\r\nCall-ID: 1\r\nContent-Length: 0\r\n\r\n"
	b := "INVITE sip:b SIP/2.0\r\nCall-ID: 2\r\nl: 5\r\n\r\nhello"
	var f framer
	var got []string
	stream := "\r\n\r\n" + a + b + "\r\n" + a
	for i := 0; i < len(stream); i += 7 { // a stream read in small pieces
		for _, m := range f.push([]byte(stream[i:min(i+7, len(stream))])) {
			got = append(got, string(m))
		}
	}
	if len(got) != 3 || got[0] != a || got[1] != b || got[2] != a {
		t.Fatalf("framed %q", got)
	}
	if len(f.buf) != 0 {
		t.Fatalf("left %q", f.buf)
	}
	if f.push([]byte(strings.Repeat("x", maxFrame+1))) != nil || f.buf != nil {
		t.Fatal("a stream without a message end is not dropped")
	}
}

func TestSIPHeaderAndInitialInvite(t *testing.T) {
	inv := []byte("INVITE sip:a SIP/2.0\r\ni: abc@h\r\nt: <sip:a>;x=1\r\nCSeq: 1 INVITE\r\n\r\n")
	if got := sipHeader(inv, "call-id", "i"); got != "abc@h" {
		t.Fatalf("Call-ID %q", got)
	}
	if !isInitialInvite(inv) {
		t.Fatal("an INVITE without a To-tag is initial")
	}
	re := []byte("INVITE sip:a SIP/2.0\r\nTo: <sip:a;tag=uri-param>;TAG=9\r\n\r\n")
	if isInitialInvite(re) {
		t.Fatal("a re-INVITE (To-tag) is not initial")
	}
	if isInitialInvite([]byte("INVITE sip:a SIP/2.0\r\nTo: <sip:a;tag=x>\r\n\r\n")) != true {
		t.Fatal("a tag in the To URI is not a To-tag")
	}
}

type fakeListener struct {
	net.Listener
	addr net.Addr
}

func (l fakeListener) Addr() net.Addr { return l.addr }

// TestTraceHubSkipsWrappedListeners: what sipgo's hook reports for our own
// listeners (UDP/TCP port, TLS port) is not recorded a second time; what it
// reports for a connection sipgo opened itself joins the call's trace.
func TestTraceHubSkipsWrappedListeners(t *testing.T) {
	s, _ := New(Options{DefaultTrunk: store.Trunk{Name: "default", Allow: []string{"127.0.0.0/8"}}})
	s.port = 5060
	s.tlsListeners = []net.Listener{fakeListener{addr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5061}}}
	h := &traceHub{servers: []*Server{s}, framers: map[string]*framer{}}
	invite := []byte("INVITE sip:+27210000001@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.0.1:4000;branch=z9hG4bK1\r\n" +
		"To: <sip:+27210000001@127.0.0.1>\r\nFrom: <sip:a@127.0.0.1>;tag=1\r\nCall-ID: hub@test\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n")
	if !s.traceMessage(true, "TLS", "127.0.0.1:5061", "127.0.0.1:4000", invite, time.Now(), true) { // as the TLS wrapper does
		t.Fatal("the INVITE on the TLS listener started no trace")
	}
	ok := []byte("SIP/2.0 100 Trying\r\nCall-ID: hub@test\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n")
	h.handle(false, "TLS", "127.0.0.1:5061", "127.0.0.1:4000", ok) // the hook's copy of a wrapped write
	h.handle(false, "UDP", "0.0.0.0:5060", "127.0.0.1:4000", ok)
	ct := s.trace.byID["hub@test"]
	if ct.count != 1 {
		t.Fatalf("%d messages recorded, want the INVITE only", ct.count)
	}
	h.handle(false, "TCP", "127.0.0.1:40123", "192.0.2.1:5060", ok) // a connection sipgo opened
	if ct.count != 2 {
		t.Fatalf("%d messages recorded, want the leg's message too", ct.count)
	}
}
