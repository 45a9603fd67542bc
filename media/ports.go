package media

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// PortPool hands out RTP/RTCP port pairs (an even RTP port and the next
// odd one) from a range such as --rtp-ports 20000-29999, at random: the port
// of the next call cannot be predicted from the last one's (an attacker who
// could would spray it before the caller's first packet). It is safe for
// concurrent use.
type PortPool struct {
	low, high int // even RTP ports low..high

	mu   sync.Mutex
	used map[int]bool
}

// ParsePortRange parses "LOW-HIGH".
func ParsePortRange(s string) (low, high int, err error) {
	a, b, ok := strings.Cut(strings.TrimSpace(s), "-")
	if !ok {
		return 0, 0, fmt.Errorf("%w: %q", ErrPortRange, s)
	}
	low, err1 := strconv.Atoi(strings.TrimSpace(a))
	high, err2 := strconv.Atoi(strings.TrimSpace(b))
	if err1 != nil || err2 != nil {
		return 0, 0, fmt.Errorf("%w: %q", ErrPortRange, s)
	}
	return low, high, nil
}

// NewPortPool returns a pool over the UDP ports low..high inclusive.
func NewPortPool(low, high int) (*PortPool, error) {
	if low < 1 || high > 65535 || low > high {
		return nil, fmt.Errorf("%w: %d-%d", ErrPortRange, low, high)
	}
	if low%2 == 1 {
		low++
	}
	if high%2 == 0 {
		high-- // the last RTP port needs high+1 for RTCP
	}
	if low+1 > high {
		return nil, fmt.Errorf("%w: no even/odd pair in %d-%d", ErrPortRange, low, high)
	}
	return &PortPool{low: low, high: high - 1, used: make(map[int]bool)}, nil
}

// Pairs returns how many port pairs the pool has.
func (p *PortPool) Pairs() int { return (p.high-p.low)/2 + 1 }

// InUse returns how many pairs are allocated.
func (p *PortPool) InUse() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.used)
}

// allocate binds an RTP and an RTCP socket on ip (unspecified or invalid:
// all addresses, IPv4 and IPv6). Ports that another process holds are
// skipped.
func (p *PortPool) allocate(ip netip.Addr) (rtpConn, rtcpConn udpConn, port int, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := p.Pairs()
	start := rand.IntN(n) // math/rand/v2's generator is seeded from the OS: not predictable
	for i := range n {
		port := p.low + 2*((start+i)%n)
		if p.used[port] {
			continue
		}
		a, err := listen(ip, port)
		if err != nil {
			if isAddrInUse(err) {
				continue
			}
			return nil, nil, 0, err
		}
		b, err := listen(ip, port+1)
		if err != nil {
			a.Close()
			if isAddrInUse(err) {
				continue
			}
			return nil, nil, 0, err
		}
		p.used[port] = true
		return a, b, port, nil
	}
	return nil, nil, 0, ErrNoPorts
}

func (p *PortPool) release(port int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.used, port)
}

// udpConn is a stream's RTP or RTCP socket: a *net.UDPConn, or on Linux,
// where the shared readers read it (poller_linux.go), a rawSock that Go's
// netpoller does not watch.
type udpConn interface {
	WriteToUDPAddrPort(b []byte, addr netip.AddrPort) (int, error)
	ReadFromUDPAddrPort(b []byte) (int, netip.AddrPort, error)
	LocalAddr() net.Addr
	Close() error
}

// listen binds a stream's socket: unspecified or invalid ip, every local
// address (IPv6 and IPv4); an IPv4 address, an IPv4 socket.
func listen(ip netip.Addr, port int) (udpConn, error) {
	if sharedReaders {
		return listenRaw(ip, port)
	}
	la := &net.UDPAddr{Port: port}
	if ip.IsValid() && !ip.IsUnspecified() {
		la.IP = ip.AsSlice()
		la.Zone = ip.Zone()
	}
	return net.ListenUDP("udp", la)
}

func isAddrInUse(err error) bool { return errors.Is(err, syscall.EADDRINUSE) }
