//go:build !linux

package media

import (
	"errors"
	"net/netip"
	"time"

	"github.com/cxco/gateway/media/clock"
)

// polled is a stream's registration with a shared reader: Linux only (see
// poller_linux.go); elsewhere every stream runs its own reader goroutines.
type polled struct{}

func (s *Stream) startPolling() error { return errors.ErrUnsupported }

func (s *Stream) stopPolling() {}

var sharedReaders = false

var pollSlots []struct{} // no shared readers

func listenRaw(netip.Addr, int) (udpConn, error) { return nil, errors.ErrUnsupported }

// ownSockets: the sockets are net.UDPConns already.
func (s *Stream) ownSockets() error { return nil }

var rawSyscalls = false // Linux only (poller_linux.go)

// tickPolls: no shared readers here.
func tickPolls(*clock.Wheel) {}

var shardPolls = false

// tickReads: no shared readers here.
var tickReads = false

// lateReadWanted and readLate: no shard reads here.
func (s *Stream) lateReadWanted(time.Time) bool { return false }
func (s *Stream) readLate()                     {}
