package bridge

import (
	"context"
	"errors"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"
)

// nbConn is the provider's TCP connection as the websocket (and TLS, for wss://)
// sees it. It lets the wheel's shard write caller audio itself (Session.writeDirect)
// without ever blocking: in non-blocking mode a Write gives the kernel what it takes
// now and keeps the rest, in order, in a backlog that the session's writer then
// flushes (the kernel's socket buffer is full only when the provider has not read
// for a while). A Write in the ordinary mode (the writer, gorilla's handshake and
// control frames, the call's last word) first flushes the backlog, then blocks until
// its own bytes are taken or the write deadline passes, as a net.Conn's Write does.
// Every byte goes through the backlog while it is not empty, so what was written
// stays whole and in order on the wire.
//
// The non-blocking write is a raw write(2) on the socket's descriptor (the shard is
// not marked as in a system call: see media's raw sends), under mu; Close marks the
// connection closed under mu before the descriptor is closed, so no write reaches a
// descriptor number that was closed and reused.
type nbConn struct {
	*net.TCPConn
	raw syscall.RawConn
	fd  int

	// nonBlocking is set by the session while it writes from the shard (under its
	// writeMu, which every writer of the connection holds): a TLS record written
	// then reaches Write with no other way to say so.
	nonBlocking atomic.Bool

	// backlogged is len(backlog) > 0, for a look without taking mu (pending).
	backlogged atomic.Bool

	mu      sync.Mutex
	backlog []byte
	closed  bool
	err     error // the first write error: the stream is broken from there on
}

// directWrites: the shard writes caller audio itself (on by default;
// CXCO_DIRECT_WRITE=0 turns it off, for the A/B against the writer-only path:
// connections are then dialled without an nbConn, and every chunk goes through
// the session's writer as before). Read once, at start.
var directWrites = os.Getenv("CXCO_DIRECT_WRITE") != "0"

// NetDial dials with dial (a net.Dialer's DialContext when nil) and wraps a TCP
// connection in an nbConn (see there). Providers give it to gorilla's
// Dialer.NetDialContext, so that the nbConn sits under TLS for wss://.
func NetDial(dial func(ctx context.Context, network, addr string) (net.Conn, error)) func(ctx context.Context, network, addr string) (net.Conn, error) {
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil || !directWrites {
			return c, err
		}
		return wrapNB(c), nil
	}
}

// wrapNB is c in an nbConn when c is a TCP connection whose descriptor can be had;
// else c.
func wrapNB(c net.Conn) net.Conn {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return c
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return c
	}
	nc := &nbConn{TCPConn: tc, raw: raw, fd: -1}
	if raw.Control(func(fd uintptr) { nc.fd = int(fd) }) != nil || nc.fd < 0 {
		return c
	}
	return nc
}

// Write implements net.Conn.
func (c *nbConn) Write(b []byte) (int, error) {
	nonBlocking := c.nonBlocking.Load()
	c.mu.Lock()
	if err := c.writeNowLocked(b, nonBlocking); err != nil {
		c.mu.Unlock()
		return 0, err
	}
	pending := c.setBackloggedLocked()
	c.mu.Unlock()
	if pending && !nonBlocking {
		if err := c.flush(); err != nil {
			return 0, err
		}
	}
	return len(b), nil
}

// writeNonBlocking is Write in non-blocking mode, for the shard's direct write on
// a plain connection (the session's writeMu held, as with nonBlocking): what the
// kernel does not take now stays in the backlog for the session's writer.
func (c *nbConn) writeNonBlocking(b []byte) error {
	c.mu.Lock()
	err := c.writeNowLocked(b, true)
	if err == nil {
		c.setBackloggedLocked()
	}
	c.mu.Unlock()
	return err
}

// setBackloggedLocked sets backlogged from the backlog (under mu, as every store to
// it) and returns it; it stores only a change (a locked exchange, every 20 ms, for
// a value that is nearly always false).
func (c *nbConn) setBackloggedLocked() bool {
	pending := len(c.backlog) > 0
	if c.backlogged.Load() != pending {
		c.backlogged.Store(pending)
	}
	return pending
}

// writeNowLocked writes b at once if nothing waits before it, as much as the kernel
// takes without blocking, and appends the rest to the backlog.
func (c *nbConn) writeNowLocked(b []byte, raw bool) error {
	switch {
	case c.closed:
		return net.ErrClosed
	case c.err != nil:
		return c.err
	}
	for len(c.backlog) == 0 && len(b) > 0 {
		n, errno := c.write(b, raw)
		if errno == syscall.EINTR {
			continue
		}
		if errno == syscall.EAGAIN {
			break
		}
		if errno != 0 {
			c.err = &net.OpError{Op: "write", Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: os.NewSyscallError("write", errno)}
			return c.err
		}
		b = b[n:]
	}
	c.backlog = append(c.backlog, b...)
	return nil
}

// write is one write(2) of b on the descriptor: raw from the shard, a Go system
// call from the session's writer (which may block for long elsewhere, and hands
// its P on as every Go system call does).
func (c *nbConn) write(b []byte, raw bool) (int, syscall.Errno) {
	var n uintptr
	var errno syscall.Errno
	if raw {
		n, _, errno = syscall.RawSyscall(syscall.SYS_WRITE, uintptr(c.fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	} else {
		n, _, errno = syscall.Syscall(syscall.SYS_WRITE, uintptr(c.fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	}
	return int(n), errno
}

// pending reports whether bytes wait in the backlog.
func (c *nbConn) pending() bool { return c.backlogged.Load() }

// flush blocks until the backlog is written, the write deadline passes or the
// connection fails; the socket's readiness is waited for through Go's netpoller.
func (c *nbConn) flush() error {
	var ferr error
	err := c.raw.Write(func(fd uintptr) bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		switch {
		case c.closed:
			ferr = net.ErrClosed
			return true
		case c.err != nil:
			ferr = c.err
			return true
		}
		for len(c.backlog) > 0 {
			n, errno := c.write(c.backlog, false)
			if errno == syscall.EINTR {
				continue
			}
			if errno == syscall.EAGAIN {
				return false // wait until the socket takes more
			}
			if errno != 0 {
				c.err = &net.OpError{Op: "write", Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: os.NewSyscallError("write", errno)}
				ferr = c.err
				return true
			}
			c.backlog = c.backlog[:copy(c.backlog, c.backlog[n:])]
		}
		c.backlogged.Store(false)
		if cap(c.backlog) > 16<<10 {
			c.backlog = nil // a stall's backlog is not kept for the rest of the call
		}
		return true
	})
	if err != nil {
		if errors.Is(err, net.ErrClosed) {
			return err
		}
		// The deadline passed with bytes still waiting: the stream is broken, as
		// after a net.Conn's timed-out write (what is left of a frame can never be
		// completed by another).
		c.mu.Lock()
		if c.err == nil {
			c.err = &net.OpError{Op: "write", Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
		}
		c.mu.Unlock()
		return err
	}
	return ferr
}

// Close implements net.Conn.
func (c *nbConn) Close() error {
	c.mu.Lock()
	c.closed = true
	c.backlog = nil
	c.backlogged.Store(false)
	c.mu.Unlock()
	return c.TCPConn.Close()
}
