package control_test

import (
	"net/netip"
	"testing"

	"github.com/cxco/gateway/control"
)

// TestForbiddenAddr: every spelling of a loopback, private or metadata address
// is refused, also inside IPv6 forms that carry an IPv4 address (IPv4-mapped,
// IPv4-compatible, 6to4, NAT64 well-known and local-use, Teredo); public
// addresses, also in those forms, are not.
func TestForbiddenAddr(t *testing.T) {
	for _, c := range []struct {
		addr      string
		forbidden bool
	}{
		{"127.0.0.1", true}, {"::1", true}, {"10.1.2.3", true}, {"169.254.169.254", true}, {"100.64.0.1", true},
		{"::ffff:127.0.0.1", true},
		{"::127.0.0.1", true},      // IPv4-compatible (deprecated): ::/96
		{"::a9fe:a9fe", true},      // ::169.254.169.254
		{"2002:7f00:1::", true},    // 6to4 of 127.0.0.1
		{"2002:a00:1::1", true},    // 6to4 of 10.0.0.1
		{"2002:a9fe:a9fe::", true}, // 6to4 of the metadata address
		{"64:ff9b::7f00:1", true},  // NAT64 well-known prefix
		{"64:ff9b:1::a00:1", true}, // NAT64 local-use prefix (RFC 8215)
		{"64:ff9b:1:ffff::5db8:d822", true},
		{"2001:0:4136:e378::1", true}, // Teredo
		{"fec0::1", true},             // site-local (deprecated)
		{"100::1", true},              // discard-only
		{"2001:db8::1", true},         // documentation
		{"fd00:ec2::254", true},
		{"93.184.216.34", false}, {"2606:2800:220:1::1", false},
		{"2002:5db8:d822::1", false}, // 6to4 of a public address
		{"::ffff:93.184.216.34", false},
	} {
		if got := control.ForbiddenAddr(netip.MustParseAddr(c.addr)); got != c.forbidden {
			t.Errorf("ForbiddenAddr(%s) = %v, want %v", c.addr, got, c.forbidden)
		}
	}
}
