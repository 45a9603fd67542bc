package sdp

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
)

// baresipOffer is what baresip 1.0 offers with opus, g722 and g711 loaded,
// with mediaenc srtp (best effort: RTP/AVP with a=crypto) or srtp-mand
// (RTP/SAVP).
func baresipOffer(proto string, crypto bool) string {
	b := "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n" +
		"m=audio 10000 " + proto + " 96 9 0 8 101\r\n" +
		"a=rtpmap:96 opus/48000/2\r\na=fmtp:96 stereo=1;sprop-stereo=1;maxaveragebitrate=28000\r\n" +
		"a=rtpmap:9 G722/8000\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n" +
		"a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n"
	if crypto {
		b += "a=crypto:1 AES_CM_128_HMAC_SHA1_32 inline:" + base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 30)) + "\r\n" +
			"a=crypto:2 AES_CM_128_HMAC_SHA1_80 inline:" + base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{9}, 30)) + "|2^31\r\n"
	}
	return b + "a=sendrecv\r\n"
}

func TestPolicy(t *testing.T) {
	hd := []string{"opus", "G722", "PCMU", "PCMA"}
	tests := []struct {
		name    string
		offer   string
		policy  Policy
		err     error
		codec   string
		pt      uint8
		suite   string // "" plain
		answers []string
	}{
		{name: "zero policy takes G.711 in the offer's order", offer: baresipOffer("RTP/AVP", false), codec: "PCMU", pt: 0},
		{name: "HD first: opus", offer: baresipOffer("RTP/AVP", false), policy: Policy{Codecs: hd}, codec: "opus", pt: 96,
			answers: []string{"m=audio 20000 RTP/AVP 96 101\r\n", "a=rtpmap:96 opus/48000/2\r\n", "a=fmtp:96 " + OpusFmtp + "\r\n"}},
		{name: "our order, not the offer's", offer: baresipOffer("RTP/AVP", false), policy: Policy{Codecs: []string{"PCMA", "G722"}}, codec: "PCMA", pt: 8},
		{name: "G722 without opus", offer: baresipOffer("RTP/AVP", false), policy: Policy{Codecs: []string{"G722", "PCMU"}}, codec: "G722", pt: 9,
			answers: []string{"m=audio 20000 RTP/AVP 9 101\r\n", "a=rtpmap:9 G722/8000\r\n"}},
		{name: "nothing in common", offer: strings.Replace(baresipOffer("RTP/AVP", false), " 96 9 0 8 101", " 96 9 0 101", 1),
			policy: Policy{Codecs: []string{"PCMA"}}, err: ErrNoCommonCodec},
		{name: "best-effort SRTP, optional: the offer's first suite", offer: baresipOffer("RTP/AVP", true), policy: Policy{Codecs: hd}, codec: "opus", pt: 96,
			suite: SuiteAES32, answers: []string{"m=audio 20000 RTP/AVP 96 101\r\n", "a=crypto:1 AES_CM_128_HMAC_SHA1_32 inline:"}},
		{name: "best-effort SRTP, only _80 taken", offer: baresipOffer("RTP/AVP", true), policy: Policy{Suites: []string{SuiteAES80}}, codec: "PCMU",
			suite: SuiteAES80, answers: []string{"a=crypto:2 AES_CM_128_HMAC_SHA1_80 inline:"}},
		{name: "best-effort SRTP, required", offer: baresipOffer("RTP/AVP", true), policy: Policy{SRTP: SRTPRequired}, codec: "PCMU", suite: SuiteAES32},
		{name: "best-effort SRTP, disabled: plain", offer: baresipOffer("RTP/AVP", true), policy: Policy{SRTP: SRTPDisabled}, codec: "PCMU"},
		{name: "SAVP, optional", offer: baresipOffer("RTP/SAVP", true), codec: "PCMU", suite: SuiteAES32,
			answers: []string{"m=audio 20000 RTP/SAVP 0 101\r\n"}},
		{name: "SAVP, required", offer: baresipOffer("RTP/SAVP", true), policy: Policy{SRTP: SRTPRequired}, codec: "PCMU", suite: SuiteAES32},
		{name: "SAVP, disabled", offer: baresipOffer("RTP/SAVP", true), policy: Policy{SRTP: SRTPDisabled}, err: ErrSRTPUnusable},
		{name: "SAVP without crypto", offer: baresipOffer("RTP/SAVP", false), err: ErrSRTPUnusable},
		{name: "plain to required", offer: baresipOffer("RTP/AVP", false), policy: Policy{SRTP: SRTPRequired}, err: ErrSRTPRequired},
		{name: "plain to required, no codec either", offer: baresipOffer("RTP/AVP", false), policy: Policy{SRTP: SRTPRequired, Codecs: []string{"PCMA"}},
			err: ErrSRTPRequired},
		{name: "crypto we cannot use", offer: strings.Replace(offers["srtp only"], "inline:", "inline:AAAA", 1), err: ErrSRTPUnusable},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := NewLocal(netip.MustParseAddr("192.0.2.10"), 20000)
			l.Policy = tc.policy
			ans, n, err := l.Answer([]byte(crlf(tc.offer)))
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
			switch {
			case tc.suite == "" && n.SRTP != nil:
				t.Errorf("SRTP %s, want plain RTP", n.SRTP.Suite)
			case tc.suite != "" && (n.SRTP == nil || n.SRTP.Suite != tc.suite):
				t.Errorf("SRTP %+v, want %s", n.SRTP, tc.suite)
			case tc.suite != "":
				if n.SRTP.Local == n.SRTP.Remote || n.SRTP.Local == (Key{}) {
					t.Error("our key is theirs or zero")
				}
				if !bytes.Contains(ans, []byte(base64.StdEncoding.EncodeToString(n.SRTP.Local[:]))) {
					t.Error("the answer does not carry our key")
				}
			}
			if tc.suite == "" && bytes.Contains(ans, []byte("a=crypto")) {
				t.Errorf("a plain answer with a=crypto:\n%s", ans)
			}
			for _, want := range tc.answers {
				if !bytes.Contains(ans, []byte(want)) {
					t.Errorf("answer lacks %q:\n%s", want, ans)
				}
			}
			// The same offer again (a re-INVITE) is answered with the same key.
			_, n2, err := l.Answer([]byte(crlf(tc.offer)))
			if err != nil || (n.SRTP != nil && n2.SRTP.Local != n.SRTP.Local) {
				t.Errorf("second answer: %v, key changed", err)
			}
		})
	}
}

// TestOfferAnswer: our offer under each policy, answered by another Local
// with the same policy, and that answer parsed back: both sides settle the
// same codec and suite, with each other's keys.
func TestOfferAnswer(t *testing.T) {
	for _, p := range []Policy{
		{Codecs: []string{"G722", "PCMU"}, SRTP: SRTPRequired},
		{Codecs: []string{"opus", "PCMA"}, SRTP: SRTPOptional, Suites: []string{SuiteAES32}},
		{SRTP: SRTPDisabled},
	} {
		t.Run(fmt.Sprint(p.Codecs, p.SRTP), func(t *testing.T) {
			a := NewLocal(netip.MustParseAddr("192.0.2.10"), 20000)
			a.Policy = p
			b := NewLocal(netip.MustParseAddr("192.0.2.20"), 30000)
			b.Policy = p
			offer := a.Offer(SendRecv)
			wantProto := "RTP/AVP "
			if p.SRTP == SRTPRequired {
				wantProto = "RTP/SAVP "
			}
			if !bytes.Contains(offer, []byte(wantProto)) || bytes.Contains(offer, []byte("a=crypto")) == (p.SRTP == SRTPDisabled) {
				t.Fatalf("offer:\n%s", offer)
			}
			ans, nb, err := b.Answer(offer)
			if err != nil {
				t.Fatal(err)
			}
			na, err := a.ParseAnswer(ans)
			if err != nil {
				t.Fatal(err)
			}
			if na.Codec.Name != p.codecs()[0] || nb.Codec.Name != na.Codec.Name {
				t.Errorf("codecs %s and %s, want %s", na.Codec.Name, nb.Codec.Name, p.codecs()[0])
			}
			if (na.SRTP == nil) != (p.SRTP == SRTPDisabled) || (na.SRTP == nil) != (nb.SRTP == nil) {
				t.Fatalf("SRTP %v and %v under %s", na.SRTP, nb.SRTP, p.SRTP)
			}
			if na.SRTP != nil && (na.SRTP.Local != nb.SRTP.Remote || na.SRTP.Remote != nb.SRTP.Local || na.SRTP.Suite != nb.SRTP.Suite) {
				t.Error("the two sides do not hold each other's keys")
			}
		})
	}
	// An answer whose a=crypto is not one of ours is refused.
	a := NewLocal(netip.MustParseAddr("192.0.2.10"), 20000)
	a.Policy = Policy{SRTP: SRTPRequired}
	a.Offer(SendRecv)
	if _, err := a.ParseAnswer([]byte(crlf(offers["srtp only"]))); err != nil {
		t.Errorf("an answer echoing tag 1 with our suite: %v", err)
	}
	forged := strings.Replace(offers["srtp only"], "crypto:1 ", "crypto:7 ", 1)
	if _, err := a.ParseAnswer([]byte(crlf(forged))); !errors.Is(err, ErrSRTPUnusable) {
		t.Errorf("an answer with a tag we never offered: %v", err)
	}
}

// TestFix: once media runs, a re-offer is answered with the same codec or
// refused, even when the policy would prefer another.
func TestFix(t *testing.T) {
	l := NewLocal(netip.MustParseAddr("192.0.2.10"), 20000)
	l.Policy = Policy{Codecs: []string{"opus", "G722", "PCMU"}}
	_, n, err := l.Answer([]byte(baresipOffer("RTP/AVP", false)))
	if err != nil || n.Codec.Name != "opus" {
		t.Fatal(n.Codec, err)
	}
	l.Fix(n)
	if _, n, err = l.Answer([]byte(baresipOffer("RTP/AVP", false))); err != nil || n.Codec.Name != "opus" {
		t.Errorf("re-offer: %v %v", n.Codec, err)
	}
	noOpus := strings.Replace(baresipOffer("RTP/AVP", false), " 96 9 0 8 101", " 9 0 8 101", 1)
	if _, _, err = l.Answer([]byte(noOpus)); !errors.Is(err, ErrNoCommonCodec) {
		t.Errorf("re-offer without opus: %v", err)
	}
}

// TestKeysNeverPrinted: a Negotiated printed whole, with fmt or slog, shows no
// key material.
func TestKeysNeverPrinted(t *testing.T) {
	l := NewLocal(netip.MustParseAddr("192.0.2.10"), 20000)
	_, n, err := l.Answer([]byte(baresipOffer("RTP/SAVP", true)))
	if err != nil || n.SRTP == nil {
		t.Fatal(err)
	}
	var logged bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&logged, nil))
	log.Info("negotiated", "n", n, "srtp", n.SRTP, "key", n.SRTP.Local)
	slog.New(slog.NewTextHandler(&logged, nil)).Info("negotiated", "n", n, "srtp", *n.SRTP)
	printed := logged.String() + fmt.Sprintf("%v %+v %#v %x %s %v", n, n, n, n.SRTP.Local, n.SRTP.Remote, *n.SRTP)
	for _, k := range []Key{n.SRTP.Local, n.SRTP.Remote} {
		for _, form := range []string{base64.StdEncoding.EncodeToString(k[:]), fmt.Sprintf("%x", k[:]), fmt.Sprint(k[:4])} {
			if strings.Contains(printed, form) {
				t.Fatalf("key printed as %q in:\n%s", form, printed)
			}
		}
	}
	if !strings.Contains(printed, "[redacted]") {
		t.Errorf("no redaction marker in %s", printed)
	}
}

func TestParseCrypto(t *testing.T) {
	key := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 30))
	for _, tc := range []struct {
		line string
		ok   bool
	}{
		{"1 AES_CM_128_HMAC_SHA1_80 inline:" + key, true},
		{"1 AES_CM_128_HMAC_SHA1_32 inline:" + key + "|2^20", true},
		{"1 AES_CM_128_HMAC_SHA1_80 inline:" + strings.TrimRight(key, "="), true},
		{"1 AES_CM_128_HMAC_SHA1_80 inline:" + key + "|2^20|1:4", false}, // MKI
		{"1 AES_CM_128_HMAC_SHA1_80 inline:" + key + " UNENCRYPTED_SRTP", false},
		{"1 AES_CM_128_HMAC_SHA1_80 inline:" + key + ";inline:" + key, false},
		{"1 AES_256_CM_HMAC_SHA1_80 inline:" + key, false},
		{"1 AES_CM_128_HMAC_SHA1_80 inline:AAAA", false},
		{"x AES_CM_128_HMAC_SHA1_80 inline:" + key, false},
		{"1 AES_CM_128_HMAC_SHA1_80 uri:" + key, false},
		{"1 AES_CM_128_HMAC_SHA1_80", false},
	} {
		if _, ok := parseCrypto(tc.line); ok != tc.ok {
			t.Errorf("%q: ok %v, want %v", tc.line, ok, tc.ok)
		}
	}
}

func TestParsePolicyAndCodecs(t *testing.T) {
	for in, want := range map[string]SRTPPolicy{"": SRTPOptional, "Required": SRTPRequired, "disabled": SRTPDisabled} {
		if p, err := ParseSRTPPolicy(in); err != nil || p != want {
			t.Errorf("%q: %v %v", in, p, err)
		}
	}
	if _, err := ParseSRTPPolicy("mandatory"); err == nil {
		t.Error("mandatory accepted")
	}
	if c, err := ParseCodecs(" g722, OPUS ,pcmu"); err != nil || strings.Join(c, ",") != "G722,opus,PCMU" {
		t.Errorf("%v %v", c, err)
	}
	for _, bad := range []string{"G729", "PCMU,pcmu"} {
		if _, err := ParseCodecs(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
