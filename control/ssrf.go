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
// private, link-local, unspecified, multicast, shared (CGNAT) and cloud metadata
// addresses, in IPv4 and IPv6 (and IPv4 mapped into IPv6).
func ForbiddenAddr(addr netip.Addr) bool {
	addr = addr.Unmap()
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
	netip.MustParsePrefix("fd00:ec2::254/128"), // AWS metadata over IPv6
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
