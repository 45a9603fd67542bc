package bridge

import (
	"errors"
	"log/slog"
	"net/netip"
	"testing"
)

func TestICEMode(t *testing.T) {
	local := []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("::1"),
		netip.MustParseAddr("fd00::2")}
	tests := []struct {
		name, public, want string
	}{
		{"loopback: tests and one machine", "127.0.0.1", iceLoopback},
		{"IPv6 loopback", "::1", iceLoopback},
		{"an address of this machine", "192.0.2.2", iceLocal},
		{"an IPv6 address of this machine", "fd00::2", iceLocal},
		{"another address: 1:1 NAT", "203.0.113.7", iceNAT},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := iceMode(netip.MustParseAddr(tt.public), local); got != tt.want {
				t.Fatalf("iceMode(%s) = %s, want %s", tt.public, got, tt.want)
			}
			if _, err := iceSettings(netip.MustParseAddr(tt.public), local, 20000, 20999, slog.New(slog.DiscardHandler)); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestCheckOffer(t *testing.T) {
	const head = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
	tests := []struct {
		name, offer string
		ok          bool
	}{
		{"browser offer with Opus and PCMU", head + "m=audio 9 UDP/TLS/RTP/SAVPF 111 0 8\r\nc=IN IP4 0.0.0.0\r\na=rtpmap:111 opus/48000/2\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n", true},
		{"static payload type 0 without rtpmap", head + "m=audio 9 UDP/TLS/RTP/SAVPF 0\r\nc=IN IP4 0.0.0.0\r\n", true},
		{"lower-case encoding name", head + "m=audio 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=rtpmap:96 pcmu/8000\r\n", true},
		{"Opus only", head + "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=rtpmap:111 opus/48000/2\r\n", false},
		{"PCMU on a rejected section", head + "m=audio 0 UDP/TLS/RTP/SAVPF 0\r\nc=IN IP4 0.0.0.0\r\n", false},
		{"video only", head + "m=video 9 UDP/TLS/RTP/SAVPF 0\r\nc=IN IP4 0.0.0.0\r\n", false},
		{"empty", "", false},
		{"not SDP", "{\"type\":\"offer\"}", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkOffer(tt.offer)
			if (err == nil) != tt.ok {
				t.Fatalf("checkOffer: %v, want ok=%v", err, tt.ok)
			}
			var te *TestCallError
			if err != nil && (!errors.Is(err, ErrBadOffer) || !errors.As(err, &te) || te.HTTPStatus() != 422) {
				t.Fatalf("error %v is not a 422 bad offer", err)
			}
		})
	}
}
