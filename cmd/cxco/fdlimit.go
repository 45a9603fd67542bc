package main

import (
	"log/slog"
	"os"
	"syscall"
)

// raiseFDLimit raises the soft descriptor limit (RLIMIT_NOFILE) to the hard one
// and returns the limit now in force. Go's runtime does the same since Go 1.19;
// doing it here as well keeps the gateway's figures (the TCP connection cap is
// derived from the limit) independent of that, and logs what it got.
func raiseFDLimit(log *slog.Logger) uint64 {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		log.Warn("cannot read the descriptor limit", "err", err)
		return 1024
	}
	if rl.Cur < rl.Max {
		soft := rl.Cur
		rl.Cur = rl.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
			log.Warn("cannot raise the descriptor limit to the hard limit", "soft", soft, "hard", rl.Max, "err", err)
			rl.Cur = soft
		}
	}
	return rl.Cur
}

// sipTCPCap is the open SIP TCP connections allowed when --sip-tcp-max-conns is
// 0: half of what the descriptor limit leaves after what calls need (two RTP
// sockets and a provider websocket each, for --max-calls) and 256 for the rest
// (HTTP, Redis, webhooks, listeners), at least 16 and at most 4096.
func sipTCPCap(limit uint64, maxCalls int) (int, bool) {
	need := uint64(3*maxCalls + 256)
	if limit <= need+32 {
		return 16, false
	}
	return int(min(max((limit-need)/2, 16), 4096)), true
}

// openFDs counts the process's open descriptors (0 where /proc is missing).
func openFDs() int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return 0
	}
	return len(ents)
}
