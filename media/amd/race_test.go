//go:build race

package amd

// Under the race detector (the suite's mode) the accuracy set is a quarter of
// itself: every phrase, speed and noise, each in one of the voices in turn.
// Without it (`go test ./media/amd/`) the whole set runs; the note's figures
// are from that run.
const raceEnabled = true
