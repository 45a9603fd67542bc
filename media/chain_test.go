package media

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"testing"

	"github.com/cxco/gateway/media/g711"
	"github.com/cxco/gateway/media/resample"
)

// A pcm_16000 agent's audio on a G.711 call is downsampled and encoded a
// fifth of a frame at a time: what goes out is what one conversion of the
// whole signal gives, frame after frame, for either law.
func TestPCM16kFramesMatchOneConversion(t *testing.T) {
	const frames = 100
	rng := rand.New(rand.NewPCG(4, 4))
	pcm := make([]int16, frames*2*frameSamples)
	for i := range pcm {
		pcm[i] = int16(9000*((i*13)%41-20)/20 + rng.IntN(2001) - 1000)
	}
	in := make([]byte, 2*len(pcm))
	for i, v := range pcm {
		binary.LittleEndian.PutUint16(in[2*i:], uint16(v))
	}
	down := make([]int16, len(pcm)/2)
	resample.NewDown2().Process(down, pcm)
	for _, codec := range []wireCodec{wirePCMU, wirePCMA} {
		want := make([]byte, len(down))
		if codec == wirePCMA {
			g711.PCMToALaw(want, down)
		} else {
			g711.PCMToULaw(want, down)
		}
		c := buildOutbound(FormatPCM16k, codec)
		var got []byte
		for f := range frames {
			got = append(got, c.frame(in[f*4*frameSamples:(f+1)*4*frameSamples])...)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("%v: the frames differ from one conversion of the whole signal", codec)
		}
	}
}
