//go:build !race

package cxcotest

const raceEnabled = false
