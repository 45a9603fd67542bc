//go:build race

package media

// raceEnabled: the race detector changes allocation counts (sync.Pool drops
// items on purpose), so allocation tests skip.
const raceEnabled = true
