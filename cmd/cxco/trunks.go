package main

import (
	"context"
	"time"

	"github.com/cxco/gateway/callpath"
	"github.com/cxco/gateway/control"
	"github.com/cxco/gateway/sip"
	"github.com/cxco/gateway/store"
)

// trunkRuntime shows the SIP server's trunks to the control plane.
type trunkRuntime struct{ s *sip.Server }

func (r trunkRuntime) DefaultTrunk() store.Trunk              { return r.s.DefaultTrunk() }
func (r trunkRuntime) ReloadTrunks(ctx context.Context) error { return r.s.ReloadTrunks(ctx) }
func (r trunkRuntime) Registrations() []control.Registration {
	var out []control.Registration
	for _, s := range r.s.Registrations() {
		v := control.Registration{TrunkID: s.TrunkID, Trunk: s.Trunk, Registrar: s.Registrar, AOR: s.AOR, Contact: s.Contact,
			State: s.State, LastError: s.LastError, LastStatus: s.LastStatus, Failures: s.Failures}
		if !s.ExpiresAt.IsZero() {
			t := s.ExpiresAt.UTC().Truncate(time.Second)
			v.Expires = &t
		}
		if !s.NextAttempt.IsZero() {
			t := s.NextAttempt.UTC().Truncate(time.Second)
			v.NextAttempt = &t
		}
		out = append(out, v)
	}
	return out
}

// outboundCaller places the API's outbound calls through the SIP server.
type outboundCaller struct{ s *sip.Server }

func (o outboundCaller) PlaceCall(ctx context.Context, r control.OutboundRequest) (*store.Conversation, error) {
	return o.s.PlaceCall(ctx, sip.OutboundCall{Company: r.Company, Agent: r.Agent, From: r.From, To: r.To,
		DynamicVariables: r.DynamicVariables, RingTimeout: r.RingTimeout, MachineDetection: r.MachineDetection,
		HideCallerID: r.HideCallerID,
		Done: func(callpath.End) {
			if r.Done != nil {
				r.Done()
			}
		}})
}
