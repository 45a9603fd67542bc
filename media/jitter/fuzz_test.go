package jitter

import (
	"bytes"
	"encoding/binary"
	"testing"
	"time"
)

// FuzzBuffer drives the buffer with schedules built from the input: random
// arrival orders (delays), duplicates, losses, sequence and timestamp
// wrap-around, SSRC changes and timestamp jumps.
//
// Input layout: seq0 (2 bytes), ts0 (4 bytes), mode (1 byte), then one byte
// per packet. In clean mode (mode bit 0 clear) the network only delays (by
// less than the minimum depth) and duplicates, and the output must be the
// input exactly. Otherwise each byte may also drop the packet, change its
// length, jump its timestamp or change the SSRC, and the buffer must keep
// its invariants.
func FuzzBuffer(f *testing.F) {
	f.Add([]byte{0xff, 0xf0, 0xff, 0xff, 0xff, 0x00, 0, 1, 2, 3, 15, 0, 0x20, 7, 9, 0x2f, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xfe, 0x80, 1, 0x10, 0x90, 0x40, 0xc0, 0x3f, 0xff, 0, 0, 0x55, 0xaa, 3, 3, 3, 3, 3, 3})
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 0x0f, 0x0e, 0x0d, 0x0c, 0x0b, 0x0a, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 0x2f})
	f.Fuzz(fuzzOne)
}

func fuzzOne(t *testing.T, data []byte) {
	{
		if len(data) < 8 {
			return
		}
		seq := binary.BigEndian.Uint16(data)
		ts := binary.BigEndian.Uint32(data[2:])
		clean := data[6]&1 == 0
		ops := data[7:]
		if len(ops) > 400 {
			ops = ops[:400]
		}
		audio := source((len(ops) + 1) * 480)
		var s []sched
		ssrc := uint32(7)
		pos := 0
		sendAt := time.Duration(0)
		dups := 0
		for i, op := range ops {
			n := 160
			delay := time.Duration(op&0x0f) * time.Millisecond // < Min - Margin
			if i == 0 {
				delay = 0
			}
			if !clean {
				switch op >> 6 {
				case 1:
					n = 80 * int(1+op&3) // 10..40 ms
				case 2:
					if op&0x30 == 0x30 {
						ts += uint32(op) * 100000 // timestamp jump
					}
				case 3:
					if op&0x30 == 0x30 {
						ssrc++
					}
				}
			}
			sendAt += time.Duration(n) * time.Second / SampleRate
			pk := sched{at: sendAt + delay, pkt: Packet[byte]{SSRC: ssrc, Sequence: seq, Timestamp: ts, Payload: audio[pos : pos+n]}}
			drop := !clean && op&0x10 != 0 && i > 0
			if !drop {
				s = append(s, pk)
			}
			if op&0x20 != 0 && (clean || op&0x10 == 0) {
				d := pk
				d.at += time.Duration(op&0x7) * time.Millisecond
				s = append(s, d)
				dups++
			}
			seq++
			ts += uint32(n)
			pos += n
		}
		b := newBuf()
		out, frames, pushed := runCadence(t, b, s, sendAt, false)
		st := b.Stats()
		if st.Frames != uint64(len(frames)) || len(out) != len(frames)*FrameSamples {
			t.Fatalf("frames %d, popped %d, %d bytes", st.Frames, len(frames), len(out))
		}
		if st.Received != uint64(pushed) {
			t.Fatalf("received %d, pushed %d", st.Received, pushed)
		}
		if st.Late+st.Duplicate > st.Received {
			t.Fatalf("late %d + duplicate %d > received %d", st.Late, st.Duplicate, st.Received)
		}
		if st.MaxDepth > 120*time.Millisecond+FrameDuration {
			t.Fatalf("max depth %v", st.MaxDepth)
		}
		if clean {
			if st.Concealed != 0 || st.Late != 0 || st.Resyncs != 0 {
				t.Fatalf("clean schedule: %+v", st)
			}
			if pushed == len(s) && st.Duplicate != uint64(dups) {
				t.Fatalf("duplicates %d, sent %d", st.Duplicate, dups)
			}
			if !bytes.Equal(out, audio[:len(out)]) {
				t.Fatal("clean schedule: output differs from input")
			}
		}
	}
}
