package audiotest

import (
	"encoding/binary"
	"fmt"
	"os"
)

const (
	wavFormatPCM  = 1
	wavHeaderSize = 44
)

// WriteWAV writes x as a canonical 44-byte-header RIFF/WAVE file of 16-bit
// mono linear PCM at the given sample rate (Hz), replacing any existing file.
func WriteWAV(path string, rate int, x []int16) error {
	if rate <= 0 {
		return fmt.Errorf("audiotest: write %s: sample rate %d: %w", path, rate, ErrUnsupportedFormat)
	}
	dataLen := 2 * len(x)
	b := make([]byte, 0, wavHeaderSize+dataLen)
	b = append(b, "RIFF"...)
	b = binary.LittleEndian.AppendUint32(b, uint32(36+dataLen))
	b = append(b, "WAVEfmt "...)
	b = binary.LittleEndian.AppendUint32(b, 16) // fmt chunk size
	b = binary.LittleEndian.AppendUint16(b, wavFormatPCM)
	b = binary.LittleEndian.AppendUint16(b, 1) // channels
	b = binary.LittleEndian.AppendUint32(b, uint32(rate))
	b = binary.LittleEndian.AppendUint32(b, uint32(2*rate)) // byte rate
	b = binary.LittleEndian.AppendUint16(b, 2)              // block align
	b = binary.LittleEndian.AppendUint16(b, 16)             // bits per sample
	b = append(b, "data"...)
	b = binary.LittleEndian.AppendUint32(b, uint32(dataLen))
	for _, v := range x {
		b = binary.LittleEndian.AppendUint16(b, uint16(v))
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return fmt.Errorf("audiotest: write WAV: %w", err)
	}
	return nil
}

// ReadWAV reads a RIFF/WAVE file of 16-bit mono linear PCM and returns its
// sample rate and samples. Chunks other than "fmt " and "data" (LIST, fact,
// ...) are skipped. Other formats fail with ErrUnsupportedFormat, non-WAVE
// data with ErrNotWAV and truncated or inconsistent files with ErrMalformed.
func ReadWAV(path string) (rate int, x []int16, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, nil, fmt.Errorf("audiotest: read WAV: %w", err)
	}
	rate, x, err = parseWAV(b)
	if err != nil {
		return 0, nil, fmt.Errorf("audiotest: read %s: %w", path, err)
	}
	return rate, x, nil
}

func parseWAV(b []byte) (int, []int16, error) {
	if len(b) < 12 || string(b[0:4]) != "RIFF" || string(b[8:12]) != "WAVE" {
		return 0, nil, ErrNotWAV
	}
	var (
		rate    int
		haveFmt bool
	)
	for p := 12; p+8 <= len(b); {
		id := string(b[p : p+4])
		size := int(binary.LittleEndian.Uint32(b[p+4 : p+8]))
		body := p + 8
		if size < 0 || size > len(b)-body {
			return 0, nil, fmt.Errorf("%w: chunk %q of %d bytes overruns the file", ErrMalformed, id, size)
		}
		chunk := b[body : body+size]
		switch id {
		case "fmt ":
			if size < 16 {
				return 0, nil, fmt.Errorf("%w: fmt chunk of %d bytes", ErrMalformed, size)
			}
			format := binary.LittleEndian.Uint16(chunk[0:2])
			channels := binary.LittleEndian.Uint16(chunk[2:4])
			bits := binary.LittleEndian.Uint16(chunk[14:16])
			if format != wavFormatPCM || channels != 1 || bits != 16 {
				return 0, nil, fmt.Errorf("%w: format %d, %d channels, %d bits",
					ErrUnsupportedFormat, format, channels, bits)
			}
			rate = int(binary.LittleEndian.Uint32(chunk[4:8]))
			if rate <= 0 {
				return 0, nil, fmt.Errorf("%w: sample rate %d", ErrMalformed, rate)
			}
			haveFmt = true
		case "data":
			if !haveFmt {
				return 0, nil, fmt.Errorf("%w: data chunk before fmt chunk", ErrMalformed)
			}
			if size%2 != 0 {
				return 0, nil, fmt.Errorf("%w: odd data length %d", ErrMalformed, size)
			}
			x := make([]int16, size/2)
			for i := range x {
				x[i] = int16(binary.LittleEndian.Uint16(chunk[2*i:]))
			}
			return rate, x, nil
		}
		p = body + size + size&1 // chunks are padded to even length
	}
	return 0, nil, fmt.Errorf("%w: no data chunk", ErrMalformed)
}
