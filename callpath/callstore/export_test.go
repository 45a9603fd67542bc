package callstore

import "github.com/cxco/gateway/callpath"

// RecorderDone is closed once rec's transcript recorder goroutine has ended;
// nil when none runs.
func RecorderDone(rec callpath.Record) <-chan struct{} {
	tr := rec.(*record).tr
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if !tr.running {
		return nil
	}
	return tr.done
}
