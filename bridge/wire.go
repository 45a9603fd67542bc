package bridge

import (
	"encoding/binary"
	"io"
	"math/rand/v2"
	"net"
	"slices"
	"time"
)

// The websocket's hot path, the same for every provider: the session writes its
// data frames itself, and reads each message into a pooled buffer.

// frameWriter builds client text frames (RFC 6455 §5.2: FIN, opcode 1, masked with a
// fresh key each) into one buffer, and writes them to the socket in one call. It
// replaces gorilla's per-message writer on the hot path, which allocates for every
// message a client sends; gorilla's own control frames (close, pong) are written with
// a single Write of their own, which the socket keeps whole.
type frameWriter struct {
	buf      []byte
	frames   int
	deadline time.Time // the write deadline last set on conn
	conn     net.Conn
}

func (w *frameWriter) add(payload []byte) {
	n := len(payload)
	b := append(w.buf, 0x81) // FIN, text
	switch {
	case n < 126:
		b = append(b, 0x80|byte(n))
	case n <= 0xffff:
		b = append(b, 0x80|126, byte(n>>8), byte(n))
	default:
		b = append(b, 0x80|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	key := rand.Uint32()
	b = binary.LittleEndian.AppendUint32(b, key)
	start := len(b)
	b = append(b, payload...)
	maskBytes(b[start:], key)
	w.buf = b
	w.frames++
}

// frameWriterKeep is the most buffer a frameWriter keeps between writes: a wake
// normally writes one or two chunks (a few hundred bytes of µ-law, 1-2 KiB of
// 16 kHz PCM); the buffer of a batch after a stall (up to 64 chunks) is let go
// rather than held for the rest of the call.
const frameWriterKeep = 4 << 10

func (w *frameWriter) reset() {
	w.buf = w.buf[:0]
	if cap(w.buf) > frameWriterKeep {
		w.buf = nil
	}
	w.frames = 0
}

// write sends the frames. The write deadline is pushed forward at most once a
// second (setting it is not free), so a write always has at least 2 s.
func (w *frameWriter) write(conn net.Conn, now time.Time) bool {
	if !w.arm(conn, now) {
		return false
	}
	_, err := conn.Write(w.buf)
	return err == nil
}

// arm pushes conn's write deadline forward when it is less than 2 s away (or was
// set by someone else: w.conn nil).
func (w *frameWriter) arm(conn net.Conn, now time.Time) bool {
	if conn != w.conn || w.deadline.Sub(now) < writeDeadline-time.Second {
		w.conn, w.deadline = conn, now.Add(writeDeadline)
		if conn.SetWriteDeadline(w.deadline) != nil {
			w.conn = nil
			return false
		}
	}
	return true
}

// maskBytes XORs b with the 4-byte key (in wire order: the key's little-endian bytes).
func maskBytes(b []byte, key uint32) {
	k8 := uint64(key) | uint64(key)<<32
	i := 0
	for ; i+8 <= len(b); i += 8 {
		binary.LittleEndian.PutUint64(b[i:], binary.LittleEndian.Uint64(b[i:])^k8)
	}
	for ; i < len(b); i++ {
		b[i] ^= byte(key >> (8 * (i & 3)))
	}
}

// readAll reads a whole message into buf (reused from message to message).
func readAll(r io.Reader, buf []byte) ([]byte, error) {
	for {
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, 4<<10)
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}
