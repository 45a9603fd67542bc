package cxcotest

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// Capture is dumpcap (Debian's wireshark-common, from tshark) recording UDP on
// the loopback interface: what really crossed the wire, read back by the test.
type Capture struct {
	t    testing.TB
	p    *Process
	file string
}

// UDPPacket is one captured IPv4 UDP datagram.
type UDPPacket struct {
	At       time.Time // the kernel's capture time
	Src, Dst netip.AddrPort
	Payload  []byte
}

// StartCapture starts capturing on lo with a BPF filter (e.g. "udp portrange
// 30000-30099"); it returns once dumpcap captures.
func StartCapture(t testing.TB, filter string) *Capture {
	t.Helper()
	bin, err := exec.LookPath("dumpcap")
	if err != nil {
		t.Fatalf("dumpcap is not installed (apt-get install tshark): %v", err)
	}
	file := filepath.Join(t.TempDir(), "capture.pcap")
	p := Start(t, bin, nil, "-i", "lo", "-P", "-f", filter, "-w", file)
	p.WaitStderr(t, "Capturing on", 15*time.Second)
	return &Capture{t: t, p: p, file: file}
}

// Stop ends the capture and returns its UDP packets in order.
func (c *Capture) Stop() []UDPPacket {
	c.t.Helper()
	c.p.Signal(syscall.SIGINT)
	select {
	case <-c.p.Done():
	case <-time.After(10 * time.Second):
		c.p.Kill()
		c.t.Fatal("dumpcap did not stop")
	}
	raw, err := os.ReadFile(c.file)
	if err != nil {
		c.t.Fatal(err)
	}
	pkts, err := parsePcap(raw)
	if err != nil {
		c.t.Fatalf("capture %s: %v", c.file, err)
	}
	return pkts
}

// parsePcap reads a classic pcap file of Ethernet frames (Linux's loopback
// device links as Ethernet) and keeps the IPv4 UDP datagrams.
func parsePcap(b []byte) ([]UDPPacket, error) {
	if len(b) < 24 {
		return nil, fmt.Errorf("pcap: %d bytes, no header", len(b))
	}
	var bo binary.ByteOrder
	frac := time.Microsecond
	switch m := binary.LittleEndian.Uint32(b); m {
	case 0xa1b2c3d4, 0xa1b23c4d:
		bo = binary.LittleEndian
		if m == 0xa1b23c4d {
			frac = time.Nanosecond
		}
	case 0xd4c3b2a1, 0x4d3cb2a1:
		bo = binary.BigEndian
		if m == 0x4d3cb2a1 {
			frac = time.Nanosecond
		}
	default:
		return nil, fmt.Errorf("pcap: not a pcap file (magic %x)", b[:4])
	}
	if link := bo.Uint32(b[20:]); link != 1 {
		return nil, fmt.Errorf("pcap: link type %d, want Ethernet (1)", link)
	}
	var out []UDPPacket
	for off := 24; off+16 <= len(b); {
		n := int(bo.Uint32(b[off+8:]))
		at := time.Unix(int64(bo.Uint32(b[off:])), int64(bo.Uint32(b[off+4:]))*int64(frac))
		off += 16
		if off+n > len(b) {
			break // cut short by the stop
		}
		f := b[off : off+n]
		off += n
		if len(f) < 14+20+8 || binary.BigEndian.Uint16(f[12:]) != 0x0800 {
			continue
		}
		ip := f[14:]
		ihl := int(ip[0]&0x0f) * 4
		if ip[9] != 17 || len(ip) < ihl+8 {
			continue
		}
		udp := ip[ihl:]
		src := netip.AddrPortFrom(netip.AddrFrom4([4]byte(ip[12:16])), binary.BigEndian.Uint16(udp[0:]))
		dst := netip.AddrPortFrom(netip.AddrFrom4([4]byte(ip[16:20])), binary.BigEndian.Uint16(udp[2:]))
		ulen := int(binary.BigEndian.Uint16(udp[4:]))
		if ulen < 8 || ulen > len(udp) {
			continue
		}
		out = append(out, UDPPacket{At: at, Src: src, Dst: dst, Payload: append([]byte(nil), udp[8:ulen]...)})
	}
	return out, nil
}
