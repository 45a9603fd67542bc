//go:build race

package cxcotest

const raceEnabled = true
