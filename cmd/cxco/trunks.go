package main

import (
	"context"

	"github.com/cxco/gateway/control"
	"github.com/cxco/gateway/sip"
	"github.com/cxco/gateway/store"
)

// trunkRuntime shows the SIP server's trunks to the control plane.
type trunkRuntime struct{ s *sip.Server }

func (r trunkRuntime) DefaultTrunk() store.Trunk              { return r.s.DefaultTrunk() }
func (r trunkRuntime) ReloadTrunks(ctx context.Context) error { return r.s.ReloadTrunks(ctx) }
func (r trunkRuntime) Registrations() []control.Registration  { return nil }
