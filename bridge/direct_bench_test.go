//go:build linux

package bridge

import (
	"testing"
	"time"

	"github.com/cxco/gateway/media"
)

// BenchmarkDirectChunk is the caller-audio path of one 20 ms frame from the
// shard's side, as the wheel's playout runs it: Session.OnAudio with a frame
// that completes a chunk, the chunk's message and frame, and the direct write
// to a real websocket on loopback (plain), whose server end reads everything.
// The write(2) is in it; the instruction counts of the user-space part come
// from callgrind over the same benchmark:
//
//	go test -c -o /tmp/bridge.test ./bridge/
//	valgrind --tool=callgrind /tmp/bridge.test -test.run '^$' -test.bench DirectChunk -test.benchtime 20000x
func BenchmarkDirectChunk(b *testing.B) {
	s, srv := directPairBuf(b, false, 0)
	defer s.Close("bench_end")
	// The provider's end is drained on the benchmark's goroutine, between
	// chunks: no other goroutine runs, so callgrind's counts inside OnAudio
	// are the session's alone.
	raw := srv.NetConn()
	sink := make([]byte, 64<<10)
	audio := make([]byte, 160)
	f := media.Frame{Audio: audio, Arrival: time.Now(), Due: time.Now()}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		audio[0] = byte(i)
		f.Due = time.Now()
		s.OnAudio(f)
		if nb := nbOf(s.current().Conn().NetConn()); nb.pending() || s.wrun.Load() {
			b.Fatal("the direct write left bytes for the writer")
		}
		if _, err := raw.Read(sink); err != nil {
			b.Fatal(err)
		}
	}
}
