package sip

import (
	"container/list"
	"sync"

	gsip "github.com/emiago/sipgo/sip"
)

// rejectedTxs bounds the INVITE server transactions kept after a final error
// response (4xx-6xx) until they end.
//
// RFC 3261 §17.2.1: after a final non-2xx the transaction retransmits it (Timer
// G: 0.5, 1, 2, 4, 4 ... s over UDP) until the ACK comes or Timer H (64*T1 = 32
// s) gives up. A carrier ACKs within a round trip (the transaction then lingers
// T4 = 5 s for retransmitted ACKs); an INVITE flood never ACKs, so every INVITE
// the call rate admits and routing refuses (404) is held 32 s with ten
// retransmissions: 6,400 transactions at the default 200 calls/s, about 10 KiB
// each, and a goroutine per retransmission. On a machine whose CPU is busy those
// goroutines queue on the socket, and the race detector's build held 0.6-1 GB
// (heap 97 MB, up to 4,400 goroutines at once, each with its own trace memory).
//
// Beyond max transactions, the oldest is ended (its retransmissions stop; a late
// ACK then matches no transaction and is ignored, RFC 3261 §17.2.3 lets a UAS
// drop it). With max four seconds of the call rate, a transaction ended this way
// has sent its response at least four times (0, 0.5, 1.5, 3.5 s) when the
// INVITEs come as fast as the call rate lets them, and longer at any slower rate:
// a carrier's ACK, or its lost response, has been dealt with long before.
// Each one ended early counts as cxco_sip_dropped_total{cause="rejection_held"}.
type rejectedTxs struct {
	max     int
	evicted func()

	mu    sync.Mutex
	order list.List // gsip.ServerTransaction, oldest first
}

func newRejectedTxs(max int, evicted func()) *rejectedTxs {
	return &rejectedTxs{max: max, evicted: evicted}
}

// add keeps tx, answered with a final error, until it ends; past max, the oldest
// kept ends now.
func (r *rejectedTxs) add(tx gsip.ServerTransaction) {
	r.mu.Lock()
	e := r.order.PushBack(tx)
	var old []gsip.ServerTransaction
	for r.order.Len() > r.max {
		f := r.order.Front()
		old = append(old, r.order.Remove(f).(gsip.ServerTransaction))
	}
	r.mu.Unlock()
	forget := func(string, error) {
		r.mu.Lock()
		r.order.Remove(e) // a no-op when it was already taken out
		r.mu.Unlock()
	}
	if !tx.OnTerminate(forget) {
		forget("", nil) // it has ended already (over TCP, or ACKed at once)
	}
	for _, t := range old {
		t.Terminate() // outside the lock: its OnTerminate takes it
		r.evicted()
	}
}

// len is how many are kept (tests).
func (r *rejectedTxs) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.order.Len()
}
