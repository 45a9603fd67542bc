package sip

import (
	"os"
	"path/filepath"
	"testing"

	gsip "github.com/emiago/sipgo/sip"

	"github.com/cxco/gateway/media/sdp"
	"github.com/cxco/gateway/store"
)

// FuzzInvite runs what the gateway does with an incoming message before a call
// exists: the stateless reply to what sipgo cannot parse, validation, the number
// and caller, the SDP body (multipart included), offer/answer. Nothing may panic.
func FuzzInvite(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "rfc4475", "*", "*.dat"))
	for _, p := range files {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte(sprintf(baseInvite, "")))
	f.Add([]byte("INVITE sip:+1555@gw SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\n" +
		"Call-ID: q\r\nCSeq: 1 INVITE\r\nContent-Type: application/sdp\r\nContent-Length: 129\r\n\r\n" +
		"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 1.2.3.4\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := gsip.ParseMessage(data)
		if err != nil {
			_ = statelessReject(data, 400, "Bad Request")
			_ = unknownScheme(data)
			return
		}
		req, ok := m.(*gsip.Request)
		if !ok {
			return
		}
		if code, _, _ := validate(req); code != 0 {
			return
		}
		_ = dialled(req)
		_ = callerNumber(req, store.NumberRule{Country: "ZA"})
		_ = supportsTimer(req)
		_, _, _ = parseSE(headerValue(req, "Session-Expires", "x"))
		body, err := sdpBody(req)
		if err != nil || body == nil {
			return
		}
		local := sdp.NewLocal(mustAddr("192.0.2.10"), 20000)
		if ans, _, err := local.Answer(body); err == nil {
			if _, err := sdp.Parse(ans); err != nil {
				t.Fatalf("our answer does not parse: %v\n%s", err, ans)
			}
		}
	})
}
