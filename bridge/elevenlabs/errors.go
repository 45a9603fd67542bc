package elevenlabs

// ErrProvider: the voice-AI provider failed or could not be reached. Callers answer
// 503 (API) or 503 (SIP). It says so through Unavailable, so the control plane can
// map it without importing this package.
var ErrProvider error = providerError{}

type providerError struct{}

func (providerError) Error() string { return "voice-AI provider unavailable" }

// Unavailable marks the error as a dependency being down (HTTP 503).
func (providerError) Unavailable() bool { return true }
