package bridge

import "errors"

// ErrProvider: the voice-AI provider failed or could not be reached. Callers answer
// 503 (API) or 503 (SIP).
var ErrProvider = errors.New("voice-AI provider unavailable")
