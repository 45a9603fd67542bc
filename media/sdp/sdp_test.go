package sdp

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func crlf(s string) string { return strings.ReplaceAll(strings.TrimLeft(s, "\n"), "\n", "\r\n") }

var offers = map[string]string{
	"sipp default": `
v=0
o=user1 53655765 2353687637 IN IP4 127.0.0.1
s=-
c=IN IP4 127.0.0.1
t=0 0
m=audio 6000 RTP/AVP 0
a=rtpmap:0 PCMU/8000
`,
	"asterisk": `
v=0
o=- 1234567 1234567 IN IP4 192.168.1.10
s=Asterisk
c=IN IP4 192.168.1.10
t=0 0
m=audio 17362 RTP/AVP 0 8 3 111 101
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:3 GSM/8000
a=rtpmap:111 G726-32/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a=ptime:20
a=maxptime:150
a=sendrecv
`,
	"freeswitch G722 first": `
v=0
o=FreeSWITCH 1700000000 1700000001 IN IP4 10.0.0.5
s=FreeSWITCH
c=IN IP4 10.0.0.5
t=0 0
m=audio 30000 RTP/AVP 9 8 0 101 13
a=rtpmap:9 G722/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a=rtpmap:13 CN/8000
a=ptime:20
a=rtcp:30001 IN IP4 10.0.0.5
`,
	"twilio style": `
v=0
o=root 1111 1111 IN IP4 54.172.60.1
s=Twilio Media Gateway
c=IN IP4 54.172.60.1
t=0 0
m=audio 13442 RTP/AVP 0 101
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a=ptime:20
a=sendrecv
`,
	"ipv6 media-level c and dynamic PT": `
v=0
o=- 42 42 IN IP6 2001:db8::1
s=-
t=0 0
m=audio 40000 RTP/AVP 96 97
c=IN IP6 2001:db8::7
a=rtpmap:96 pcma/8000/1
a=rtpmap:97 telephone-event/8000
a=ptime:30
a=rtcp:40010
`,
	"video audio image: only audio used": `
v=0
o=- 1 2 IN IP4 203.0.113.9
s=-
c=IN IP4 203.0.113.9
t=0 0
m=video 5000 RTP/AVP 96
a=rtpmap:96 H264/90000
m=audio 5002 RTP/AVP 18 8
a=rtpmap:18 G729/8000
m=image 5004 udptl t38
`,
	"sendonly hold": `
v=0
o=- 5 6 IN IP4 198.51.100.2
s=-
c=IN IP4 198.51.100.2
t=0 0
a=sendonly
m=audio 9000 RTP/AVP 8 101
a=rtpmap:101 telephone-event/8000
`,
	"recvonly": `
v=0
o=- 5 6 IN IP4 198.51.100.2
s=-
c=IN IP4 198.51.100.2
t=0 0
m=audio 9000 RTP/AVP 0
a=recvonly
`,
	"inactive": `
v=0
o=- 5 6 IN IP4 198.51.100.2
s=-
c=IN IP4 198.51.100.2
t=0 0
m=audio 9000 RTP/AVP 0
a=inactive
`,
	"old style hold c=0.0.0.0": `
v=0
o=- 5 7 IN IP4 198.51.100.2
s=-
c=IN IP4 0.0.0.0
t=0 0
m=audio 9000 RTP/AVP 0
`,
	"lf line endings, ptime 10, maxptime": `
v=0
o=- 5 7 IN IP4 198.51.100.2
s=-
c=IN IP4 198.51.100.2/127
t=0 0
m=audio 9000/2 RTP/AVP 0
a=ptime:10
a=maxptime:40
`,
	// errors
	"no common codec": `
v=0
o=- 1 1 IN IP4 10.1.1.1
s=-
c=IN IP4 10.1.1.1
t=0 0
m=audio 4000 RTP/AVP 18 9
a=rtpmap:18 G729/8000
`,
	"srtp only": `
v=0
o=- 1 1 IN IP4 10.1.1.1
s=-
c=IN IP4 10.1.1.1
t=0 0
m=audio 4000 RTP/SAVP 0
a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz
`,
	"audio rejected by offerer": `
v=0
o=- 1 1 IN IP4 10.1.1.1
s=-
c=IN IP4 10.1.1.1
t=0 0
m=audio 0 RTP/AVP 0
`,
	"PCMU at 16 kHz is not ours": `
v=0
o=- 1 1 IN IP4 10.1.1.1
s=-
c=IN IP4 10.1.1.1
t=0 0
m=audio 4000 RTP/AVP 96
a=rtpmap:96 PCMU/16000
`,
	"no connection address":   "v=0\no=- 1 1 IN IP4 10.1.1.1\ns=-\nt=0 0\nm=audio 4000 RTP/AVP 0\n",
	"not sdp":                 "INVITE sip:x@y SIP/2.0\n",
	"bad port":                "v=0\no=- 1 1 IN IP4 10.1.1.1\ns=-\nc=IN IP4 10.1.1.1\nt=0 0\nm=audio 70000 RTP/AVP 0\n",
	"bad version":             "v=1\no=- 1 1 IN IP4 10.1.1.1\ns=-\nc=IN IP4 10.1.1.1\nt=0 0\nm=audio 4000 RTP/AVP 0\n",
	"missing origin":          "v=0\ns=-\nc=IN IP4 10.1.1.1\nt=0 0\nm=audio 4000 RTP/AVP 0\n",
	"address family mismatch": "v=0\no=- 1 1 IN IP4 10.1.1.1\ns=-\nc=IN IP4 ::1\nt=0 0\nm=audio 4000 RTP/AVP 0\n",
	"empty":                   "",
	"short m line":            "v=0\no=- 1 1 IN IP4 10.1.1.1\ns=-\nc=IN IP4 10.1.1.1\nt=0 0\nm=audio 4000 RTP/AVP\n",
	"garbage rtpmap":          "v=0\no=- 1 1 IN IP4 10.1.1.1\ns=-\nc=IN IP4 10.1.1.1\nt=0 0\nm=audio 4000 RTP/AVP 0\na=rtpmap:zz\n",
	// RFC 4475's INVITEs carry a video stream with "a=rtpmap:31 LPC" (no clock rate).
	"rfc4475 body":    "v=0\no=mhandley 29739 7272939 IN IP4 192.0.2.1\ns=-\nc=IN IP4 192.0.2.1\nt=0 0\nm=audio 49217 RTP/AVP 0 12\nm=video 3227 RTP/AVP 31\na=rtpmap:31 LPC\n",
	"host name in c=": "v=0\no=- 1 1 IN IP4 host\ns=-\nc=IN IP4 pbx.example.com\nt=0 0\nm=audio 4000 RTP/AVP 0\n",
}

func TestNegotiate(t *testing.T) {
	ap := netip.MustParseAddrPort
	tests := []struct {
		offer    string
		crlf     bool
		err      error
		codec    string
		pt       uint8
		dtmf     int // -1 none
		remote   netip.AddrPort
		rtcp     netip.AddrPort
		dir      Direction // ours
		hold     bool
		ptime    time.Duration
		answerIn []string // lines the answer must have
	}{
		{offer: "sipp default", crlf: true, codec: "PCMU", pt: 0, dtmf: -1, remote: ap("127.0.0.1:6000"), rtcp: ap("127.0.0.1:6001"),
			answerIn: []string{"m=audio 20000 RTP/AVP 0\r\n", "a=rtpmap:0 PCMU/8000", "a=ptime:20", "a=rtcp:20001", "a=sendrecv", "c=IN IP4 192.0.2.10"}},
		{offer: "asterisk", crlf: true, codec: "PCMU", pt: 0, dtmf: 101, remote: ap("192.168.1.10:17362"), rtcp: ap("192.168.1.10:17363"), ptime: 20 * time.Millisecond,
			answerIn: []string{"m=audio 20000 RTP/AVP 0 101\r\n", "a=rtpmap:101 telephone-event/8000", "a=fmtp:101 0-16"}},
		{offer: "freeswitch G722 first", crlf: true, codec: "PCMA", pt: 8, dtmf: 101, remote: ap("10.0.0.5:30000"), rtcp: ap("10.0.0.5:30001"), ptime: 20 * time.Millisecond,
			answerIn: []string{"m=audio 20000 RTP/AVP 8 101\r\n", "a=rtpmap:8 PCMA/8000", "a=fmtp:101 0-15"}},
		{offer: "twilio style", crlf: true, codec: "PCMU", pt: 0, dtmf: 101, remote: ap("54.172.60.1:13442"), rtcp: ap("54.172.60.1:13443"), ptime: 20 * time.Millisecond},
		{offer: "ipv6 media-level c and dynamic PT", crlf: true, codec: "PCMA", pt: 96, dtmf: 97, remote: ap("[2001:db8::7]:40000"), rtcp: ap("[2001:db8::7]:40010"), ptime: 30 * time.Millisecond,
			answerIn: []string{"m=audio 20000 RTP/AVP 96 97\r\n", "a=rtpmap:96 PCMA/8000", "a=ptime:20"}},
		{offer: "video audio image: only audio used", crlf: true, codec: "PCMA", pt: 8, dtmf: -1, remote: ap("203.0.113.9:5002"), rtcp: ap("203.0.113.9:5003"),
			answerIn: []string{"m=video 0 RTP/AVP 96\r\nm=audio 20000 RTP/AVP 8\r\n", "m=image 0 udptl t38\r\n"}},
		{offer: "sendonly hold", crlf: true, codec: "PCMA", pt: 8, dtmf: 101, remote: ap("198.51.100.2:9000"), rtcp: ap("198.51.100.2:9001"), dir: RecvOnly, hold: true,
			answerIn: []string{"a=recvonly"}},
		{offer: "recvonly", crlf: true, codec: "PCMU", pt: 0, dtmf: -1, remote: ap("198.51.100.2:9000"), rtcp: ap("198.51.100.2:9001"), dir: SendOnly,
			answerIn: []string{"a=sendonly"}},
		{offer: "inactive", crlf: true, codec: "PCMU", pt: 0, dtmf: -1, remote: ap("198.51.100.2:9000"), rtcp: ap("198.51.100.2:9001"), dir: Inactive, hold: true,
			answerIn: []string{"a=inactive"}},
		{offer: "old style hold c=0.0.0.0", crlf: true, codec: "PCMU", pt: 0, dtmf: -1, dir: RecvOnly, hold: true, answerIn: []string{"a=recvonly"}},
		{offer: "lf line endings, ptime 10, maxptime", codec: "PCMU", pt: 0, dtmf: -1, remote: ap("198.51.100.2:9000"), rtcp: ap("198.51.100.2:9001"), ptime: 10 * time.Millisecond},
		{offer: "no common codec", err: ErrNoCommonCodec},
		{offer: "srtp only", codec: "PCMU", pt: 0, dtmf: -1, remote: ap("10.1.1.1:4000"), rtcp: ap("10.1.1.1:4001"),
			answerIn: []string{"m=audio 20000 RTP/SAVP 0\r\n", "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:"}},
		{offer: "audio rejected by offerer", err: ErrNoCommonCodec},
		{offer: "PCMU at 16 kHz is not ours", err: ErrNoCommonCodec},
		{offer: "no connection address", err: ErrMalformed},
		{offer: "not sdp", err: ErrMalformed},
		{offer: "bad port", err: ErrMalformed},
		{offer: "bad version", err: ErrMalformed},
		{offer: "missing origin", err: ErrMalformed},
		{offer: "address family mismatch", err: ErrMalformed},
		{offer: "empty", err: ErrMalformed},
		{offer: "short m line", err: ErrMalformed},
		// A broken rtpmap only leaves its format unresolved: static PT 0 is still PCMU.
		{offer: "garbage rtpmap", codec: "PCMU", pt: 0, dtmf: -1, remote: ap("10.1.1.1:4000"), rtcp: ap("10.1.1.1:4001")},
		{offer: "rfc4475 body", codec: "PCMU", pt: 0, dtmf: -1, remote: ap("192.0.2.1:49217"), rtcp: ap("192.0.2.1:49218"),
			answerIn: []string{"m=audio 20000 RTP/AVP 0\r\n", "m=video 0 RTP/AVP 31\r\n"}},
		{offer: "host name in c=", err: ErrMalformed},
	}
	seen := map[string]bool{}
	for _, tc := range tests {
		t.Run(tc.offer, func(t *testing.T) {
			seen[tc.offer] = true
			body, ok := offers[tc.offer]
			if !ok {
				t.Fatalf("no offer %q", tc.offer)
			}
			if tc.crlf {
				body = crlf(body)
			}
			l := NewLocal(netip.MustParseAddr("192.0.2.10"), 20000)
			ans, n, err := l.Answer([]byte(body))
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("err %v, want %v", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if n.Codec.Name != tc.codec || n.Codec.PayloadType != tc.pt {
				t.Errorf("codec %s/%d, want %s/%d", n.Codec.Name, n.Codec.PayloadType, tc.codec, tc.pt)
			}
			if tc.dtmf < 0 && n.HasDTMF || tc.dtmf >= 0 && (!n.HasDTMF || int(n.DTMF.PayloadType) != tc.dtmf) {
				t.Errorf("dtmf %v/%d, want %d", n.HasDTMF, n.DTMF.PayloadType, tc.dtmf)
			}
			if n.Remote != tc.remote || n.RemoteRTCP != tc.rtcp {
				t.Errorf("remote %v rtcp %v, want %v %v", n.Remote, n.RemoteRTCP, tc.remote, tc.rtcp)
			}
			if n.Direction != tc.dir || n.Hold != tc.hold {
				t.Errorf("direction %v hold %v, want %v %v", n.Direction, n.Hold, tc.dir, tc.hold)
			}
			if n.Ptime != tc.ptime {
				t.Errorf("ptime %v, want %v", n.Ptime, tc.ptime)
			}
			for _, want := range tc.answerIn {
				if !strings.Contains(string(ans), want) {
					t.Errorf("answer lacks %q:\n%s", want, ans)
				}
			}
			// The answer is valid SDP that negotiates to the same codec.
			s, err := Parse(ans)
			if err != nil {
				t.Fatalf("answer does not parse: %v\n%s", err, ans)
			}
			offer, _ := Parse([]byte(body))
			if len(s.Media) != len(offer.Media) {
				t.Fatalf("answer has %d m= lines, offer %d", len(s.Media), len(offer.Media))
			}
			n2, err := Negotiate(s)
			if err != nil || n2.Codec != n.Codec {
				t.Fatalf("answer negotiates to %v, %v", n2.Codec, err)
			}
		})
	}
	for name := range offers {
		if !seen[name] {
			t.Errorf("offer %q has no test case", name)
		}
	}
}

func TestVersionIncrementsOnChange(t *testing.T) {
	l := NewLocal(netip.MustParseAddr("192.0.2.10"), 20000)
	v0 := l.Version()
	offer := crlf(offers["asterisk"])
	if _, _, err := l.Answer([]byte(offer)); err != nil {
		t.Fatal(err)
	}
	if l.Version() != v0 {
		t.Fatal("first answer changed the version")
	}
	_, _, _ = l.Answer([]byte(offer)) // session refresh: same answer
	if l.Version() != v0 {
		t.Fatal("unchanged answer bumped the version")
	}
	ans, _, _ := l.Answer([]byte(crlf(offers["sendonly hold"])))
	if l.Version() != v0+1 {
		t.Fatalf("hold answer: version %d, want %d", l.Version(), v0+1)
	}
	s, _ := Parse(ans)
	if s.Origin.SessionID != s.Origin.SessionVersion && s.Origin.SessionVersion == "" {
		t.Fatal("origin")
	}
}

func TestOfferAndAnswerToIt(t *testing.T) {
	tests := []struct {
		name   string
		addr   string
		answer string
		codec  string
		dir    Direction
	}{
		{"ipv4 PCMA chosen", "192.0.2.10",
			"v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 7000 RTP/AVP 8 101\r\na=rtpmap:101 telephone-event/8000\r\n", "PCMA", SendRecv},
		{"ipv6 held", "2001:db8::10",
			"v=0\r\no=- 1 1 IN IP6 2001:db8::1\r\ns=-\r\nc=IN IP6 2001:db8::1\r\nt=0 0\r\nm=audio 7000 RTP/AVP 0\r\na=sendonly\r\n", "PCMU", RecvOnly},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := NewLocal(netip.MustParseAddr(tc.addr), 30000)
			off := l.Offer(SendRecv)
			s, err := Parse(off)
			if err != nil {
				t.Fatal(err)
			}
			n, err := Negotiate(s)
			if err != nil || n.Codec.Name != "PCMU" || !n.HasDTMF || n.Remote.Port() != 30000 || n.RemoteRTCP.Port() != 30001 {
				t.Fatalf("our offer negotiates to %+v, %v", n, err)
			}
			if s.Conn.String() != tc.addr {
				t.Fatalf("offer c= %v", s.Conn)
			}
			got, err := l.ParseAnswer([]byte(tc.answer))
			if err != nil || got.Codec.Name != tc.codec || got.Direction != tc.dir {
				t.Fatalf("answer: %+v, %v", got, err)
			}
		})
	}
}

func FuzzParseNegotiate(f *testing.F) {
	for _, o := range offers {
		f.Add([]byte(crlf(o)))
	}
	f.Add([]byte(baresipOffer("RTP/SAVP", true)))
	f.Add([]byte(baresipOffer("RTP/AVP", true)))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Parse(data)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("parse error %v does not wrap ErrMalformed", err)
			}
			return
		}
		n, err := Negotiate(s)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrNoCommonCodec) && !errors.Is(err, ErrSRTPUnusable) && !errors.Is(err, ErrSRTPRequired) {
				t.Fatalf("negotiate error %v", err)
			}
			return
		}
		l := NewLocal(netip.MustParseAddr("192.0.2.10"), 20000)
		ans, n1, err := l.Answer(data)
		if err != nil || n1.Codec != n.Codec {
			t.Fatalf("Answer disagrees with Negotiate: %v %v", n1.Codec, err)
		}
		s2, err := Parse(ans)
		if err != nil {
			t.Fatalf("answer does not parse: %v\n%q", err, ans)
		}
		n2, err := Negotiate(s2)
		if err != nil || n2.Codec != n.Codec || len(s2.Media) != len(s.Media) || (n2.SRTP == nil) != (n.SRTP == nil) {
			t.Fatalf("answer renegotiates to %v (%v), %d m= lines for %d\n%q", n2.Codec, err, len(s2.Media), len(s.Media), ans)
		}
	})
}
