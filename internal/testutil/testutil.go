// Package testutil forwards to store/redistest and cmd/cxco/cxcotest (kept while
// tests move over; new code imports those).
package testutil

import (
	"context"
	"testing"
	"time"

	"github.com/cxco/gateway/cmd/cxco/cxcotest"
	"github.com/cxco/gateway/store/redistest"
)

type (
	Redis   = redistest.Redis
	Process = cxcotest.Process
)

func StartRedis(t testing.TB) *Redis                        { return redistest.StartRedis(t) }
func FreePort(t testing.TB) int                             { return cxcotest.FreePort(t) }
func FreeUDPPort(t testing.TB) int                          { return cxcotest.FreeUDPPort(t) }
func WaitTCP(addr string, d time.Duration) bool             { return cxcotest.WaitTCP(addr, d) }
func RepoRoot() string                                      { return cxcotest.RepoRoot() }
func Binary(t testing.TB) string                            { return cxcotest.Binary(t) }
func Context(t testing.TB, d time.Duration) context.Context { return cxcotest.Context(t, d) }
func Start(t testing.TB, bin string, env []string, args ...string) *Process {
	return cxcotest.Start(t, bin, env, args...)
}
