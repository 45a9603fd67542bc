package bridge

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/logging"
	"github.com/pion/webrtc/v4"

	"github.com/cxco/gateway/media"
)

// ICE modes, by what --public-ip is.
const (
	iceLoopback = "loopback" // a loopback address: candidates on it only
	iceLocal    = "local"    // an address of this machine: candidates on it only
	iceNAT      = "nat"      // another address: this machine's addresses, announced as it (1:1 NAT)
)

// iceMode says how ICE uses public, given this machine's addresses.
func iceMode(public netip.Addr, local []netip.Addr) string {
	switch {
	case public.IsLoopback():
		return iceLoopback
	}
	for _, a := range local {
		if a == public {
			return iceLocal
		}
	}
	return iceNAT
}

// localAddrs lists this machine's interface addresses.
func localAddrs() []netip.Addr {
	var out []netip.Addr
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(ipn.IP); ok {
				out = append(out, ip.Unmap())
			}
		}
	}
	return out
}

// iceSettings are the WebRTC engine's settings: host candidates over UDP only (of
// public's family), on the addresses iceMode allows, in the port range; no mDNS
// (nothing listens beyond those sockets); ICE declares the browser gone after 5 s
// without traffic and failed after 10 s; pion's logs go to ours.
func iceSettings(public netip.Addr, local []netip.Addr, portMin, portMax uint16, log *slog.Logger) (webrtc.SettingEngine, error) {
	var se webrtc.SettingEngine
	public = public.Unmap()
	nt := webrtc.NetworkTypeUDP4
	if public.Is6() {
		nt = webrtc.NetworkTypeUDP6
	}
	se.SetNetworkTypes([]webrtc.NetworkType{nt})
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetICETimeouts(5*time.Second, 10*time.Second, 2*time.Second)
	se.LoggerFactory = pionLogs{log.With("component", "webrtc")}
	if portMin > 0 && portMax >= portMin {
		if err := se.SetEphemeralUDPPortRange(portMin, portMax); err != nil {
			return se, fmt.Errorf("bridge: WebRTC port range %d-%d: %w", portMin, portMax, err)
		}
	}
	same := func(ip net.IP) (netip.Addr, bool) {
		a, ok := netip.AddrFromSlice(ip)
		a = a.Unmap()
		return a, ok && a.Is6() == public.Is6()
	}
	switch iceMode(public, local) {
	case iceLoopback:
		se.SetIncludeLoopbackCandidate(true)
		se.SetIPFilter(func(ip net.IP) bool { a, ok := same(ip); return ok && a == public })
	case iceLocal:
		se.SetIPFilter(func(ip net.IP) bool { a, ok := same(ip); return ok && a == public })
	default:
		se.SetIPFilter(func(ip net.IP) bool { a, ok := same(ip); return ok && !a.IsLoopback() && !a.IsLinkLocalUnicast() })
		if err := se.SetICEAddressRewriteRules(webrtc.ICEAddressRewriteRule{External: []string{public.String()},
			AsCandidateType: webrtc.ICECandidateTypeHost, Mode: webrtc.ICEAddressRewriteReplace}); err != nil {
			return se, err
		}
	}
	return se, nil
}

// pionTransport is a test call's media.Transport: RTP in from the browser's audio
// track, RTP out on our PCMU track. pion does ICE, DTLS, SRTP and RTCP under it.
type pionTransport struct {
	pc     *webrtc.PeerConnection
	local  *webrtc.TrackLocalStaticRTP
	remote chan *webrtc.TrackRemote // the browser's audio track, once pion has it
	track  *webrtc.TrackRemote      // the reader goroutine's
	closed chan struct{}
	once   sync.Once
}

var _ media.Transport = (*pionTransport)(nil)

func newPionTransport(pc *webrtc.PeerConnection, local *webrtc.TrackLocalStaticRTP) *pionTransport {
	return &pionTransport{pc: pc, local: local, remote: make(chan *webrtc.TrackRemote, 1), closed: make(chan struct{})}
}

// onTrack takes the browser's first audio track (pion's OnTrack).
func (t *pionTransport) onTrack(tr *webrtc.TrackRemote) {
	if tr.Kind() != webrtc.RTPCodecTypeAudio {
		return
	}
	select {
	case t.remote <- tr:
	default: // a second audio track: not ours to play
	}
}

// ReadRTP implements media.Transport: it waits for the browser's track, then reads
// its packets (decrypted, with their RTP header).
func (t *pionTransport) ReadRTP(buf []byte) (int, error) {
	if t.track == nil {
		select {
		case t.track = <-t.remote:
		case <-t.closed:
			return 0, io.EOF
		}
	}
	n, _, err := t.track.Read(buf)
	return n, err
}

// WriteRTP implements media.Transport: pion sets its SSRC and payload type, then
// encrypts and sends it; before DTLS is up it drops the packet at once.
func (t *pionTransport) WriteRTP(pkt []byte) error {
	_, err := t.local.Write(pkt)
	return err
}

// Close implements media.Transport: it closes the peer connection, which ends the
// track reads.
func (t *pionTransport) Close() error {
	var err error
	t.once.Do(func() {
		close(t.closed)
		err = t.pc.Close()
	})
	return err
}

// gather waits until ICE gathering is complete (we answer without trickle).
func gather(ctx context.Context, done <-chan struct{}) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("ICE gathering did not complete: %w", ctx.Err())
	}
}

// pionLogs sends pion's logs to slog: its errors as warnings, its warnings and
// info as debug (pion warns about every stream that races a close); its debug
// and trace are dropped.
type pionLogs struct{ log *slog.Logger }

func (p pionLogs) NewLogger(scope string) logging.LeveledLogger {
	return pionLogger{p.log.With("scope", scope)}
}

type pionLogger struct{ log *slog.Logger }

func (l pionLogger) Trace(string)                 {}
func (l pionLogger) Tracef(string, ...any)        {}
func (l pionLogger) Debug(string)                 {}
func (l pionLogger) Debugf(string, ...any)        {}
func (l pionLogger) Info(msg string)              { l.log.Debug(msg) }
func (l pionLogger) Infof(f string, args ...any)  { l.log.Debug(fmt.Sprintf(f, args...)) }
func (l pionLogger) Warn(msg string)              { l.log.Debug(msg) }
func (l pionLogger) Warnf(f string, args ...any)  { l.log.Debug(fmt.Sprintf(f, args...)) }
func (l pionLogger) Error(msg string)             { l.log.Warn(msg) }
func (l pionLogger) Errorf(f string, args ...any) { l.log.Warn(fmt.Sprintf(f, args...)) }
