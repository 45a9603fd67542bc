package store

import (
	"context"
	"errors"
	"strings"
	"testing"
)

func sptr(s string) *string { return &s }

func TestNumberRuleNormalize(t *testing.T) {
	za := NumberRule{Country: "ZA"}
	us := NumberRule{Country: "US"}
	for _, tc := range []struct {
		name string
		rule NumberRule
		in   string
		want string
	}{
		{"e164 as it is", za, "+27211234567", "+27211234567"},
		{"e164 without the plus, no country", NumberRule{}, "27211234567", "+27211234567"},
		{"separators and parameters", NumberRule{}, "+27 21-123 4567;npdi", "+27211234567"},
		{"no digits", NumberRule{}, "alice", ""},
		{"empty", za, "", ""},
		{"ZA national", za, "0211234567", "+27211234567"},
		{"ZA international 00", za, "0027211234567", "+27211234567"},
		{"ZA international to another country", za, "00441632960001", "+441632960001"},
		{"ZA digits without a prefix are E.164", za, "27211234567", "+27211234567"},
		{"US national 1", us, "14155550100", "+14155550100"},
		{"US international 011", us, "011442079460000", "+442079460000"},
		{"HU national 06", NumberRule{Country: "HU"}, "0612345678", "+3612345678"},
		{"override national prefix", NumberRule{Country: "ZA", NationalPrefix: sptr("")}, "0211234567", "+0211234567"},
		{"override international prefix", NumberRule{Country: "ZA", InternationalPrefix: sptr("09")}, "0944123", "+44123"},
		{"national prefix alone is not a number", za, "0", "+0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.rule.Normalize(tc.in); got != tc.want {
				t.Fatalf("Normalize(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestNumberInCountry(t *testing.T) {
	for _, tc := range []struct {
		number, country string
		want            bool
	}{
		{"+27211234567", "ZA", true}, {"+14155550100", "ZA", false}, {"+14155550100", "US", true},
		{"+14165550100", "CA", true}, {"+442079460000", "GB", true}, {"+442079460000", "ZA", false},
		{"+27", "ZA", false}, {"+27211234567", "XX", false},
	} {
		if got := NumberInCountry(tc.number, tc.country); got != tc.want {
			t.Errorf("NumberInCountry(%q, %q) = %v", tc.number, tc.country, got)
		}
	}
}

func TestTrunkValidate(t *testing.T) {
	for _, tc := range []struct {
		name  string
		trunk Trunk
		err   string // part of the error; "" = valid
	}{
		{"minimal", Trunk{Name: "carrier"}, ""},
		{"full", Trunk{Name: "carrier", Allow: []string{"192.0.2.0/24", "2001:db8::1"}, URI: "sips:sip.carrier.example:5061",
			Username: "u", InboundAuth: true, SRTP: SRTPRequired, Codecs: []string{"g722", "PCMU"}, NAT: TrunkNAT{Latching: LatchSource},
			Numbers: NumberRule{Country: "za"}, Registration: TrunkRegistration{Enabled: true, Expires: 300},
			TLS: TrunkTLS{ClientCertFile: "/c.pem", ClientKeyFile: "/k.pem"}}, ""},
		{"no name", Trunk{}, "name"},
		{"bad cidr", Trunk{Name: "x", Allow: []string{"10.0.0.0/33"}}, "allow"},
		{"bad uri", Trunk{Name: "x", URI: "http://x"}, "uri"},
		{"sips over udp", Trunk{Name: "x", URI: "sips:x;transport=udp"}, "TLS only"},
		{"bad srtp", Trunk{Name: "x", SRTP: "maybe"}, "srtp"},
		{"bad codec", Trunk{Name: "x", Codecs: []string{"G729"}}, "codecs"},
		{"codec twice", Trunk{Name: "x", Codecs: []string{"PCMU", "pcmu"}}, "twice"},
		{"bad latching", Trunk{Name: "x", NAT: TrunkNAT{Latching: "always"}}, "nat.latching"},
		{"bad country", Trunk{Name: "x", Numbers: NumberRule{Country: "XX"}}, "numbers.country"},
		{"prefix without country", Trunk{Name: "x", Numbers: NumberRule{NationalPrefix: sptr("0")}}, "need a country"},
		{"prefix not digits", Trunk{Name: "x", Numbers: NumberRule{Country: "ZA", NationalPrefix: sptr("+")}}, "national_prefix"},
		{"cert without key", Trunk{Name: "x", TLS: TrunkTLS{ClientCertFile: "/c.pem"}}, "tls"},
		{"inbound auth without user", Trunk{Name: "x", InboundAuth: true}, "inbound_auth"},
		{"registration without registrar", Trunk{Name: "x", Username: "u", Registration: TrunkRegistration{Enabled: true}}, "registrars"},
		{"registration without user", Trunk{Name: "x", URI: "sip:x", Registration: TrunkRegistration{Enabled: true}}, "user"},
		{"expiry too short", Trunk{Name: "x", Registration: TrunkRegistration{Expires: 10}}, "expires"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.trunk.Validate()
			if tc.err == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("err = %v, want one about %q", err, tc.err)
			}
		})
	}
}

func TestParseTrunkURI(t *testing.T) {
	for in, want := range map[string]string{
		"sip:carrier.example":                    "udp carrier.example:5060",
		"sip:carrier.example:5080;transport=tcp": "tcp carrier.example:5080",
		"sips:carrier.example":                   "tls carrier.example:5061",
		"sip:user@192.0.2.1;transport=TLS":       "tls 192.0.2.1:5061",
		"sip:[2001:db8::1]:5062":                 "udp [2001:db8::1]:5062",
	} {
		u, err := ParseTrunkURI(in)
		if err != nil {
			t.Fatalf("%s: %v", in, err)
		}
		if got := u.Transport + " " + u.HostPort(); got != want {
			t.Errorf("%s: %s, want %s", in, got, want)
		}
	}
}

// TestTrunkStore: trunks are created, listed, renamed and deleted; names are unique
// (case-insensitively); the password is sealed (not in Redis in plain text) and
// opens again; every change moves the version other nodes poll.
func TestTrunkStore(t *testing.T) {
	sealer, _ := NewSealer(GenerateSecretKey())
	ctx := context.Background()
	s, err := Open(ctx, Options{Sealer: sealer})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	v0, _ := s.TrunksVersion(ctx)
	a, err := s.CreateTrunk(ctx, Trunk{Name: "Carrier A", Username: "acct", Allow: []string{"192.0.2.0/24"}}, "s3cret-pass")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateTrunk(ctx, Trunk{Name: "carrier a"}, ""); !errors.Is(err, ErrConflict) {
		t.Fatalf("duplicate name: %v", err)
	}
	if _, err := s.CreateTrunk(ctx, Trunk{Name: ""}, ""); !errors.Is(err, ErrInvalid) {
		t.Fatalf("invalid trunk: %v", err)
	}
	b, err := s.CreateTrunk(ctx, Trunk{Name: "Carrier B"}, "")
	if err != nil {
		t.Fatal(err)
	}
	keys, _ := s.rdb.Keys(ctx, "*").Result()
	for _, k := range keys {
		if typ, _ := s.rdb.Type(ctx, k).Result(); typ == "string" {
			if v, _ := s.rdb.Get(ctx, k).Result(); strings.Contains(v, "s3cret-pass") {
				t.Fatalf("the trunk password is in plain text under %s", k)
			}
		}
	}
	got, _ := s.GetTrunk(ctx, a.ID)
	if pw, err := s.TrunkPassword(got); err != nil || pw != "s3cret-pass" {
		t.Fatalf("password %q %v", pw, err)
	}
	if _, err := s.UpdateTrunk(ctx, b.ID, func(t *Trunk) error { t.Name = "CARRIER A"; return nil }, nil); !errors.Is(err, ErrConflict) {
		t.Fatalf("rename onto another trunk: %v", err)
	}
	empty := ""
	up, err := s.UpdateTrunk(ctx, a.ID, func(t *Trunk) error { t.Name = "Carrier A2"; return nil }, &empty)
	if err != nil || up.Name != "Carrier A2" || up.HasPassword() {
		t.Fatalf("update: %+v %v", up, err)
	}
	if _, err := s.CreateTrunk(ctx, Trunk{Name: "Carrier A"}, ""); err != nil {
		t.Fatalf("the old name is free again: %v", err)
	}
	if err := s.DeleteTrunk(ctx, b.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteTrunk(ctx, b.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
	list, _ := s.ListTrunks(ctx)
	if len(list) != 2 {
		t.Fatalf("%d trunks", len(list))
	}
	if v1, _ := s.TrunksVersion(ctx); v1 != v0+5 {
		t.Fatalf("version %d -> %d, want 5 moves", v0, v1)
	}
}
