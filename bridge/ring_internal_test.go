package bridge

import (
	"bytes"
	"testing"
)

// The caller-audio ring grows while the provider socket is slow and shrinks back
// once the writer has kept up for ringCalm wakes; chunks stay in order through
// both, and a busy wake restarts the count.
func TestRingShrinksAfterStall(t *testing.T) {
	s := &Session{ring: make([][]byte, ringStart), stamps: make([]chunkStamp, ringStart), chunkBytes: 160,
		partial: make([]byte, 0, 800)}
	next := byte(0)
	push := func(n int) {
		for range n {
			s.partial = append(s.partial[:0], bytes.Repeat([]byte{next}, 160)...)
			next++
			s.pushChunkLocked(s.partial)
		}
	}
	want := byte(0)
	wake := func() int { // what the writer does on a wake
		n := s.ringLen
		for s.ringLen > 0 {
			if c := s.ring[s.ringHead]; len(c) != 160 || c[0] != want {
				t.Fatalf("chunk %d out of order: got %d", want, c[0])
			}
			want++
			s.ringHead = (s.ringHead + 1) % len(s.ring)
			s.ringLen--
		}
		s.settleRingLocked(n)
		return len(s.ring)
	}
	push(40) // a stall
	if n := wake(); n != 64 {
		t.Fatalf("ring of %d slots after 40 chunks queued, want 64", n)
	}
	for range ringCalm - 1 {
		push(1)
		if n := wake(); n != 64 {
			t.Fatalf("ring shrank to %d before %d calm wakes", n, ringCalm)
		}
	}
	push(1)
	if n := wake(); n != ringStart {
		t.Fatalf("ring of %d slots after %d calm wakes, want %d", n, ringCalm, ringStart)
	}
	push(10) // another stall
	if n := wake(); n != 16 {
		t.Fatalf("ring of %d slots after 10 chunks queued, want 16", n)
	}
	for range ringCalm - 1 {
		push(1)
		wake()
	}
	push(3) // a busy wake: the count starts again
	wake()
	for range ringCalm - 1 {
		push(1)
		if n := wake(); n != 16 {
			t.Fatalf("ring shrank to %d although a wake found 3 chunks", n)
		}
	}
	push(1)
	if n := wake(); n != ringStart {
		t.Fatalf("ring of %d slots, want %d", n, ringStart)
	}
}

// A frameWriter lets the buffer of a large batch go and keeps a normal one.
func TestFrameWriterLetsStallBatchesGo(t *testing.T) {
	var w frameWriter
	msg := bytes.Repeat([]byte("a"), 270) // one µ-law chunk's message
	for range 2 {
		w.add(msg)
	}
	w.reset()
	if w.buf == nil || cap(w.buf) > frameWriterKeep {
		t.Fatalf("a two-chunk batch's buffer (cap %d) was not kept", cap(w.buf))
	}
	for range 64 {
		w.add(msg)
	}
	w.reset()
	if w.buf != nil {
		t.Fatalf("a 64-chunk batch's buffer (cap %d) was kept", cap(w.buf))
	}
}
