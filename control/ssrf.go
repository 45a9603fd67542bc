package control

import (
	"context"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"time"
)

// ForbiddenAddr says whether a webhook may not be delivered to addr: loopback,
// private, link-local, unspecified, multicast, shared (CGNAT), reserved and cloud
// metadata addresses, in IPv4 and IPv6. An IPv6 address that carries an IPv4
// address (IPv4-mapped, IPv4-compatible, 6to4) is judged by that IPv4 address;
// NAT64 (well-known and local-use prefixes) and Teredo, which reach IPv4 hosts
// through a translator we cannot see, are refused whole.
func ForbiddenAddr(addr netip.Addr) bool {
	addr = addr.Unmap()
	if v4, ok := embeddedIPv4(addr); ok {
		return ForbiddenAddr(v4)
	}
	if addr.IsLoopback() || addr.IsPrivate() || addr.IsLinkLocalUnicast() || addr.IsLinkLocalMulticast() ||
		addr.IsInterfaceLocalMulticast() || addr.IsMulticast() || addr.IsUnspecified() || !addr.IsValid() {
		return true
	}
	for _, p := range forbiddenPrefixes {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

var forbiddenPrefixes = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),         // "this" network
	netip.MustParsePrefix("100.64.0.0/10"),     // shared address space (CGNAT)
	netip.MustParsePrefix("192.0.0.0/24"),      // IETF protocol assignments
	netip.MustParsePrefix("198.18.0.0/15"),     // benchmarking
	netip.MustParsePrefix("240.0.0.0/4"),       // reserved, broadcast
	netip.MustParsePrefix("64:ff9b::/96"),      // NAT64 (could reach private IPv4)
	netip.MustParsePrefix("64:ff9b:1::/48"),    // NAT64 local-use (RFC 8215)
	netip.MustParsePrefix("2001::/32"),         // Teredo (an IPv4 server and client inside)
	netip.MustParsePrefix("2001:db8::/32"),     // documentation
	netip.MustParsePrefix("100::/64"),          // discard-only
	netip.MustParsePrefix("fec0::/10"),         // site-local (deprecated, still routed privately)
	netip.MustParsePrefix("fd00:ec2::254/128"), // AWS metadata over IPv6
}

var (
	v4Compatible = netip.MustParsePrefix("::/96")     // ::a.b.c.d (deprecated, RFC 4291)
	sixToFour    = netip.MustParsePrefix("2002::/16") // 2002:aabb:ccdd::/48 (RFC 3056)
)

// embeddedIPv4 returns the IPv4 address an IPv4-compatible or 6to4 address carries.
func embeddedIPv4(a netip.Addr) (netip.Addr, bool) {
	if !a.Is6() {
		return netip.Addr{}, false
	}
	b := a.As16()
	switch {
	case v4Compatible.Contains(a) && !a.IsUnspecified() && a != netip.IPv6Loopback():
		return netip.AddrFrom4([4]byte(b[12:16])), true
	case sixToFour.Contains(a):
		return netip.AddrFrom4([4]byte(b[2:6])), true
	}
	return netip.Addr{}, false
}

// CheckWebhookURL validates a webhook target: https (http only when insecure is
// allowed), a host, no credentials, and, unless insecure, no address that is
// private, loopback, link-local or metadata, also after resolving the name.
func CheckWebhookURL(ctx context.Context, raw string, insecure bool) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.Hostname() == "" {
		return invalid("url: %q is not an absolute URL", raw)
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !insecure {
			return invalid("url: must use https://")
		}
	default:
		return invalid("url: must use https://")
	}
	if u.User != nil {
		return invalid("url: must not contain credentials")
	}
	if len(raw) > 2000 {
		return invalid("url: at most 2000 characters")
	}
	if insecure {
		return nil
	}
	host := strings.ToLower(strings.TrimSuffix(u.Hostname(), "."))
	if host == "localhost" || strings.HasSuffix(host, ".localhost") || host == "metadata.google.internal" {
		return invalid("url: %s is not a public host", host)
	}
	if a, err := netip.ParseAddr(host); err == nil {
		if ForbiddenAddr(a) {
			return invalid("url: %s is a private, loopback, link-local or metadata address", host)
		}
		return nil
	}
	// A name that resolves to a forbidden address is refused now; one that does not
	// resolve yet is accepted and checked again at every delivery.
	rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	addrs, err := net.DefaultResolver.LookupNetIP(rctx, "ip", host)
	if err != nil {
		return nil
	}
	for _, a := range addrs {
		if ForbiddenAddr(a) {
			return invalid("url: %s resolves to %s, a private, loopback, link-local or metadata address", host, a.Unmap())
		}
	}
	return nil
}
