package audiotest

import "errors"

var (
	// ErrNotWAV is returned by ReadWAV for data that is not a RIFF/WAVE file.
	ErrNotWAV = errors.New("audiotest: not a RIFF/WAVE file")
	// ErrUnsupportedFormat is returned by ReadWAV for a WAVE file that is not
	// 16-bit mono linear PCM.
	ErrUnsupportedFormat = errors.New("audiotest: unsupported WAV format (want 16-bit mono PCM)")
	// ErrMalformed is returned by ReadWAV for a WAVE file whose chunks are
	// truncated or inconsistent.
	ErrMalformed = errors.New("audiotest: malformed WAV file")
)
