package b64

import (
	"bytes"
	"encoding/base64"
	"math/rand/v2"
	"strconv"
	"testing"
)

// Every length from 0 to 2 KiB (all the tails and alignments) of random bytes,
// and every 12-bit value in every position of a group: the same bytes as
// encoding/base64's StdEncoding.
func TestSameAsStdEncoding(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	src := make([]byte, 2048)
	for i := range src {
		src[i] = byte(r.Uint32())
	}
	for n := 0; n <= len(src); n++ {
		want := base64.StdEncoding.EncodeToString(src[:n])
		got := make([]byte, EncodedLen(n))
		Encode(got, src[:n])
		if string(got) != want {
			t.Fatalf("len %d: %q, want %q", n, got, want)
		}
		if a := AppendEncode([]byte("x"), src[:n]); string(a) != "x"+want {
			t.Fatalf("AppendEncode len %d: %q, want %q", n, a, "x"+want)
		}
	}
	// every 12-bit value in each of the four places of a six-byte group
	for place := range 4 {
		for v := range uint64(1 << 12) {
			g := r.Uint64()&(1<<48-1)&^(0xfff<<(36-12*place)) | v<<(36-12*place)
			b := []byte{byte(g >> 40), byte(g >> 32), byte(g >> 24), byte(g >> 16), byte(g >> 8), byte(g), 0, 0}
			got := make([]byte, EncodedLen(len(b)))
			Encode(got, b)
			if want := base64.StdEncoding.EncodeToString(b); string(got) != want {
				t.Fatalf("%x: %q, want %q", b, got, want)
			}
		}
	}
}

func FuzzSameAsStdEncoding(f *testing.F) {
	f.Add([]byte("hello, world"))
	f.Fuzz(func(t *testing.T, b []byte) {
		got := AppendEncode(nil, b)
		if want := base64.StdEncoding.AppendEncode(nil, b); !bytes.Equal(got, want) {
			t.Fatalf("%x: %q, want %q", b, got, want)
		}
	})
}

func BenchmarkEncode(b *testing.B) {
	for _, n := range []int{160, 640} {
		src, dst := make([]byte, n), make([]byte, EncodedLen(n))
		b.Run("b64/"+strconv.Itoa(n), func(b *testing.B) {
			b.SetBytes(int64(n))
			for range b.N {
				Encode(dst, src)
			}
		})
		b.Run("std/"+strconv.Itoa(n), func(b *testing.B) {
			b.SetBytes(int64(n))
			for range b.N {
				base64.StdEncoding.Encode(dst, src)
			}
		})
	}
}
