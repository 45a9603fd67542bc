//go:build !linux

package bridge

import (
	"context"
	"net"
	"sync/atomic"
)

// nbConn exists on Linux only (nbconn_linux.go): elsewhere the session's writer
// writes every chunk.
type nbConn struct {
	net.Conn
	nonBlocking atomic.Bool
}

// NetDial is the dialer of the provider's websocket (nbconn_linux.go); here it dials.
func NetDial(dial func(ctx context.Context, network, addr string) (net.Conn, error)) func(ctx context.Context, network, addr string) (net.Conn, error) {
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	return dial
}

const directWrites = false

func wrapNB(c net.Conn) net.Conn { return c }
func (c *nbConn) pending() bool  { return false }
func (c *nbConn) flush() error   { return nil }

func (c *nbConn) writeNonBlocking(b []byte) error { _, err := c.Write(b); return err }
