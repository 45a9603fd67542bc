package media

import (
	"fmt"
	"net/netip"

	"github.com/pion/rtp"
)

// Transport carries one call's RTP packets for a Stream that does not own UDP
// sockets: a WebRTC call, whose packets travel as SRTP over ICE. The transport
// (pion, for WebRTC) owns everything below RTP — ICE, DTLS, SRTP — and RTCP
// too: a stream on a transport sends and reads no RTCP of its own, so the
// Remote report of its Stats stays empty.
//
// The stream calls ReadRTP from its one reader goroutine and WriteRTP from the
// pacer, never concurrently with themselves; neither may keep the buffer it is
// given.
type Transport interface {
	// ReadRTP blocks until one RTP packet (header and payload) is read into
	// buf and returns its length. It returns an error once the transport is
	// closed or broken for good; the stream stops reading at the first error.
	ReadRTP(buf []byte) (int, error)
	// WriteRTP sends one marshalled RTP packet. It must not block for long: it
	// runs on the clock wheel's shard that paces other calls too.
	WriteRTP(pkt []byte) error
	// Close releases the transport and makes a blocked ReadRTP return.
	Close() error
}

// NewStreamOn returns a Stream whose RTP travels over t instead of UDP sockets
// of its own, through the same jitter buffer, codec chain, queue and pacer as a
// phone call's. It has no port (LocalPort is 0) and runs no RTCP. Start it with
// the negotiated codec (Negotiated.Remote is ignored); Close closes t.
func NewStreamOn(t Transport, opts Options) (*Stream, error) {
	if t == nil {
		return nil, fmt.Errorf("media: NewStreamOn: nil Transport")
	}
	s, err := newStream(opts)
	if err != nil {
		return nil, err
	}
	s.tr = t
	if s.opt.CNAME == "" {
		s.opt.CNAME = "cxco@transport"
	}
	return s, nil
}

// readTransport is the reader goroutine of a stream on a Transport: like
// readRTP, one reused buffer and packet. The packets have no source address
// to latch: the transport has authenticated them already.
func (s *Stream) readTransport() {
	buf := make([]byte, 1500)
	var pkt rtp.Packet
	for {
		n, err := s.tr.ReadRTP(buf)
		if err != nil {
			return
		}
		s.handleRTP(s.clk.Now(), netip.AddrPort{}, buf[:n], &pkt)
	}
}
