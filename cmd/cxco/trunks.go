package main

import (
	"context"
	"errors"
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

// numberTrunk is the trunk a number of ours belongs to (0: none, the
// default trunk): calls from it go out through that trunk.
func numberTrunk(ctx context.Context, st *store.Store, number string) (int64, error) {
	pn, err := st.GetNumberByE164(ctx, number)
	if errors.Is(err, store.ErrNotFound) {
		return 0, nil
	}
	if err != nil || pn.TrunkID == nil {
		return 0, err
	}
	return *pn.TrunkID, nil
}

// outboundCaller places the API's outbound calls through the SIP server.
type outboundCaller struct {
	s  *sip.Server
	st *store.Store
}

func (o outboundCaller) PlaceCall(ctx context.Context, r control.OutboundRequest) (*store.Conversation, error) {
	trunkID, err := numberTrunk(ctx, o.st, r.From)
	if err != nil {
		return nil, err
	}
	return o.s.PlaceCall(ctx, sip.OutboundCall{Company: r.Company, Agent: r.Agent, From: r.From, To: r.To, TrunkID: trunkID,
		DynamicVariables: r.DynamicVariables, RingTimeout: r.RingTimeout, MachineDetection: r.MachineDetection,
		HideCallerID:     r.HideCallerID,
		VoicemailMessage: r.VoicemailMessage,
		Done: func(callpath.End) {
			if r.Done != nil {
				r.Done()
			}
		}})
}
