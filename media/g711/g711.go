// Package g711 converts between 16-bit linear PCM and ITU-T G.711 µ-law
// (PCMU) and A-law (PCMA), and transcodes directly between the two laws.
//
// Every conversion is a table look-up; the tables are built once at package
// initialisation and the frame functions neither allocate nor keep state, so
// they are safe for concurrent use.
//
// # Reference
//
// The results are bit-exact with the Sun Microsystems reference g711.c in
// the revision distributed with SoX and CPython's audioop (linear2ulaw with
// CLIP 8159 on pcm>>2, linear2alaw on pcm>>3, ulaw2linear, alaw2linear):
//
//   - Decoding agrees with every common reference, including the ITU-T G.191
//     software tool library (ulaw_expand, alaw_expand).
//   - A-law encoding is also identical to G.191 alaw_compress for all 65,536
//     inputs.
//   - µ-law encoding differs from G.191 ulaw_compress for 508 negative
//     inputs. For a negative sample G.191 takes the 14-bit magnitude as the
//     one's complement, (^x)>>2, and Sun as -(x>>2), which is one larger;
//     where that crosses one of the 127 negative decision levels (4 inputs
//     each) the two choose neighbouring codes, both of which bracket the
//     input. The tests check this exactly.
//
// The encoders see only the top 14 (µ-law) or 13 (A-law) bits of a sample,
// which is the G.711 input resolution; the low bits are truncated, as in the
// reference.
//
// # Transcoding
//
// ULawToALaw and ALawToULaw are decode-then-encode through linear PCM,
// precomputed as 256-entry tables, so a transcoded call sounds exactly like
// one decoded to PCM and re-encoded. They are not the direct conversion tables
// of G.711 (Sun's _u2a/_a2u), which choose the other neighbouring level for a
// few dozen codes whose value lies nearly halfway between two levels of the
// other law.
package g711

import "math/bits"

const (
	// ULawSilence is the µ-law code for zero (positive zero), the PCMU silence
	// byte.
	ULawSilence byte = 0xFF
	// ALawSilence is the A-law code nearest zero (+8 in 16-bit linear), the
	// PCMA silence byte.
	ALawSilence byte = 0xD5
)

// Encoding tables are indexed by the 16-bit sample reinterpreted as uint16 and
// shifted down to the encoder's input resolution; decoding and transcoding
// tables by the code byte.
var (
	ulawDecode [256]int16
	alawDecode [256]int16
	ulawEncode [1 << 14]byte // index uint16(s) >> 2
	alawEncode [1 << 13]byte // index uint16(s) >> 3
	ulawToALaw [256]byte
	alawToULaw [256]byte
)

func init() {
	for c := range 256 {
		ulawDecode[c] = ulawValue(byte(c))
		alawDecode[c] = alawValue(byte(c))
	}
	for i := range ulawEncode {
		ulawEncode[i] = ulawCode(int(int16(uint16(i<<2))) >> 2)
	}
	for i := range alawEncode {
		alawEncode[i] = alawCode(int(int16(uint16(i<<3))) >> 3)
	}
	for c := range 256 {
		ulawToALaw[c] = EncodeALaw(ulawDecode[c])
		alawToULaw[c] = EncodeULaw(alawDecode[c])
	}
}

// ulawValue decodes one µ-law code (G.711 Table 2a, scaled to 16 bits).
func ulawValue(code byte) int16 {
	u := ^code
	exp := (u >> 4) & 7
	mag := (int(u&0x0F)<<3 + 0x84) << exp // biased magnitude
	if u&0x80 != 0 {
		return int16(0x84 - mag)
	}
	return int16(mag - 0x84)
}

// alawValue decodes one A-law code (G.711 Table 1a, scaled to 16 bits).
func alawValue(code byte) int16 {
	a := code ^ 0x55
	exp := (a >> 4) & 7
	mag := int(a&0x0F)<<4 + 8 // midpoint of the quantisation step
	if exp > 0 {
		mag = (mag + 0x100) << (exp - 1)
	}
	if a&0x80 != 0 {
		return int16(mag)
	}
	return int16(-mag)
}

// ulawCode encodes a 14-bit signed sample v (the 16-bit sample >> 2).
func ulawCode(v int) byte {
	var sign byte // 0x80 for negative; the whole code is inverted below
	if v < 0 {
		v, sign = -v, 0x80
	}
	v = min(v, 8159) + 33 // clip, then bias so that the segment's top bit is set
	exp := bits.Len(uint(v)) - 6
	if exp > 7 {
		return ^(sign | 0x7F) // out of range: largest magnitude
	}
	mant := byte(v>>(exp+1)) & 0x0F
	return ^(sign | byte(exp)<<4 | mant)
}

// alawCode encodes a 13-bit signed sample v (the 16-bit sample >> 3).
func alawCode(v int) byte {
	mask := byte(0xD5) // sign bit set for non-negative, even bits inverted
	if v < 0 {
		v, mask = ^v, 0x55 // one's complement magnitude
	}
	exp := max(bits.Len(uint(v))-5, 0) // v <= 4095, so exp <= 7
	shift := max(exp, 1)
	mant := byte(v>>shift) & 0x0F
	return (byte(exp)<<4 | mant) ^ mask
}

// DecodeULaw returns the 16-bit linear value of a µ-law code.
func DecodeULaw(b byte) int16 { return ulawDecode[b] }

// EncodeULaw returns the µ-law code for a 16-bit linear sample.
func EncodeULaw(s int16) byte { return ulawEncode[uint16(s)>>2] }

// DecodeALaw returns the 16-bit linear value of an A-law code.
func DecodeALaw(b byte) int16 { return alawDecode[b] }

// EncodeALaw returns the A-law code for a 16-bit linear sample.
func EncodeALaw(s int16) byte { return alawEncode[uint16(s)>>3] }

// ULawToPCM decodes µ-law src into dst and returns the number of samples
// written, min(len(dst), len(src)).
func ULawToPCM(dst []int16, src []byte) int {
	return lookup(dst, src, &ulawDecode)
}

// PCMToULaw encodes src into µ-law dst and returns the number of samples
// written, min(len(dst), len(src)).
func PCMToULaw(dst []byte, src []int16) int {
	n := min(len(dst), len(src))
	src, dst = src[:n], dst[:n]
	for i, s := range src {
		dst[i] = ulawEncode[uint16(s)>>2]
	}
	return n
}

// ALawToPCM decodes A-law src into dst and returns the number of samples
// written, min(len(dst), len(src)).
func ALawToPCM(dst []int16, src []byte) int {
	return lookup(dst, src, &alawDecode)
}

// PCMToALaw encodes src into A-law dst and returns the number of samples
// written, min(len(dst), len(src)).
func PCMToALaw(dst []byte, src []int16) int {
	n := min(len(dst), len(src))
	src, dst = src[:n], dst[:n]
	for i, s := range src {
		dst[i] = alawEncode[uint16(s)>>3]
	}
	return n
}

// ULawToALaw transcodes µ-law src into A-law dst through a 256-entry table
// and returns the number of bytes written, min(len(dst), len(src)). dst and
// src may be the same slice.
func ULawToALaw(dst, src []byte) int {
	return lookup(dst, src, &ulawToALaw)
}

// ALawToULaw transcodes A-law src into µ-law dst through a 256-entry table
// and returns the number of bytes written, min(len(dst), len(src)). dst and
// src may be the same slice.
func ALawToULaw(dst, src []byte) int {
	return lookup(dst, src, &alawToULaw)
}

// lookup maps each code byte of src through table into dst and returns the
// number written, min(len(dst), len(src)); it decodes and transcodes.
func lookup[T int16 | byte](dst []T, src []byte, table *[256]T) int {
	n := min(len(dst), len(src))
	src, dst = src[:n], dst[:n]
	for i, b := range src {
		dst[i] = table[b]
	}
	return n
}
