package media

import "errors"

var (
	// ErrNoPorts means every RTP port pair in the range is in use.
	ErrNoPorts = errors.New("media: no free RTP ports")
	// ErrClosed is returned by a Stream that has been closed.
	ErrClosed = errors.New("media: stream closed")
	// ErrNotStarted is returned by Play before Start.
	ErrNotStarted = errors.New("media: stream not started")
	// ErrStarted is returned by a second Start.
	ErrStarted = errors.New("media: stream already started")
	// ErrCodec means the negotiated codec is not one we carry (PCMU, PCMA,
	// G722, or opus where libopus loads).
	ErrCodec = errors.New("media: unsupported codec")
	// ErrPayload means an RTP payload the codec cannot take.
	ErrPayload = errors.New("media: bad payload")
	// ErrSRTP means the negotiated SRTP parameters cannot be used.
	ErrSRTP = errors.New("media: SRTP")
	// ErrFormat means audio in the wrong format for the stream's consumer.
	ErrFormat = errors.New("media: wrong audio format")
	// ErrPortRange means a port range is not "LOW-HIGH" with room for a pair.
	ErrPortRange = errors.New("media: invalid RTP port range")
)
