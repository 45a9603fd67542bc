package media

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

// The outbound queue keeps its frames in pooled chunks of chunkFrames: on
// random pushes (past its bound, which drops the oldest), pops and flushes it
// hands out the frames a plain FIFO with the same bound would, counts the same
// drops, and holds no chunk when empty (the chunks went back to the pool).
func TestQueueMatchesFIFO(t *testing.T) {
	for _, size := range []int{frameSamples, 4 * frameSamples} {
		rng := rand.New(rand.NewPCG(uint64(size), 5))
		q := queue{max: 3*chunkFrames + 5}
		q.setSize(size)
		var fifo [][]byte
		var dropped uint64
		next := 0
		frame := func() []byte {
			f := make([]byte, size)
			for i := range f {
				f[i] = byte(next*31 + i)
			}
			next++
			return f
		}
		dst := make([]byte, size)
		for op := range 200_000 {
			switch r := rng.IntN(100); {
			case r < 50:
				f := frame()
				q.push(f)
				if len(fifo) == q.max {
					fifo = fifo[1:]
					dropped++
				}
				fifo = append(fifo, f)
			case r < 99:
				ok := q.pop(dst)
				if ok != (len(fifo) > 0) {
					t.Fatalf("op %d: pop %v with %d frames queued", op, ok, len(fifo))
				}
				if ok {
					if !bytes.Equal(dst, fifo[0]) {
						t.Fatalf("op %d: popped a frame out of order", op)
					}
					fifo = fifo[1:]
				}
			default:
				if n := q.flush(); n != len(fifo) {
					t.Fatalf("op %d: flushed %d frames, want %d", op, n, len(fifo))
				}
				fifo = nil
			}
			if q.n != len(fifo) || q.dropped != dropped {
				t.Fatalf("op %d: %d frames, %d dropped; want %d, %d", op, q.n, q.dropped, len(fifo), dropped)
			}
			if q.n == 0 && (q.head != nil || q.tail != nil) {
				t.Fatalf("op %d: an empty queue holds a chunk", op)
			}
		}
		if dropped == 0 {
			t.Fatal("the bound was never reached")
		}
	}
}
