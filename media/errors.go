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
	// ErrCodec means the negotiated codec is not PCMU or PCMA at 8000 Hz.
	ErrCodec = errors.New("media: unsupported codec")
	// ErrFormat means audio in the wrong format for the stream's consumer.
	ErrFormat = errors.New("media: wrong audio format")
	// ErrPortRange means a port range is not "LOW-HIGH" with room for a pair.
	ErrPortRange = errors.New("media: invalid RTP port range")
)
