//go:build noopus

package opus

import "fmt"

// Built with -tags noopus: Opus is never available.

// Load reports that Opus is not built in.
func Load() error { return fmt.Errorf("%w: built with -tags noopus", ErrUnavailable) }

// Version returns "".
func Version() string { return "" }

// Encoder is not available in this build.
type Encoder struct{}

// NewEncoder fails: Opus is not built in.
func NewEncoder(Options) (*Encoder, error) { return nil, ErrUnavailable }

// Encode fails.
func (*Encoder) Encode([]int16) ([]byte, error) { return nil, ErrUnavailable }

// Close does nothing.
func (*Encoder) Close() {}

// Decoder is not available in this build.
type Decoder struct{}

// NewDecoder fails: Opus is not built in.
func NewDecoder() (*Decoder, error) { return nil, ErrUnavailable }

// Decode fails.
func (*Decoder) Decode([]byte, bool, int) ([]int16, error) { return nil, ErrUnavailable }

// Close does nothing.
func (*Decoder) Close() {}
