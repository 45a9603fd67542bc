package main

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"time"

	"github.com/cxco/gateway/sip"
)

// drain is the graceful stop: no new calls (INVITEs and OPTIONS get 503, /readyz
// says so), live calls may finish for up to timeout, then the rest are ended with
// BYE and recorded. A second signal ends them at once.
func drain(log *slog.Logger, s *sip.Server, sigs <-chan os.Signal, timeout time.Duration) {
	s.Drain()
	log.Info("draining: new calls are refused; live calls may finish", "active_calls", s.ActiveCalls(), "drain_timeout", timeout)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	go func() {
		select {
		case <-sigs:
			log.Warn("second signal: ending every call now")
			cancel()
		case <-ctx.Done():
		}
	}()
	if err := s.WaitIdle(ctx); err != nil {
		log.Warn("ending the calls still up", "active_calls", s.ActiveCalls())
	}
	s.HangupAll() // BYE and records written before it returns
	log.Info("drained")
}

// servePprof serves net/http/pprof on its own listener (opt-in: it exposes internals).
func servePprof(addr string, log *slog.Logger) (func(), error) {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	log.Info("pprof listening", "addr", ln.Addr().String())
	return func() { _ = srv.Close() }, nil
}
