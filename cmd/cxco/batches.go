package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/cxco/gateway/callpath"
	"github.com/cxco/gateway/callpath/batch"
	"github.com/cxco/gateway/media/amd"
	"github.com/cxco/gateway/sip"
	"github.com/cxco/gateway/store"
)

// batchDialer places a batch's calls through the SIP server (batch.Dialer):
// within the company's outbound limits, like the API's calls, and waits for
// each call's end.
type batchDialer struct {
	sip *sip.Server
	st  *store.Store
}

func (d batchDialer) Dial(ctx context.Context, c batch.Call) (batch.Result, error) {
	failed := batch.Result{Outcome: batch.Failed}
	co, err := d.st.GetCompany(ctx, c.Batch.CompanyID)
	if err != nil {
		return failed, err
	}
	a, err := d.st.GetAgent(ctx, co.ID, c.AgentID)
	if err != nil {
		return failed, err
	}
	if a.Status != store.AgentActive || co.Status == store.CompanySuspended {
		return failed, fmt.Errorf("agent %d is %s (company %s): it places no calls", a.ID, a.Status, co.Status)
	}
	from := c.From
	if from == "" {
		nums, err := d.st.CompanyNumbers(ctx, co.ID)
		if err != nil {
			return failed, err
		}
		for _, pn := range nums {
			if a.PhoneNumberID != nil && pn.ID == *a.PhoneNumberID {
				from = pn.Number
			}
		}
		if from == "" {
			return failed, errors.New("the agent has no number to call from and the batch names none")
		}
	}
	trunkID, err := numberTrunk(ctx, d.st, from)
	if err != nil {
		return failed, err
	}
	slot, err := d.st.AcquireOutbound(ctx, co.ID, fmt.Sprintf("batch-%d-%d-%d-%d", c.Batch.ID, c.Recipient, c.Attempt, time.Now().UnixNano()),
		co.OutboundLimits(), 30*time.Second)
	if err != nil {
		return batch.Result{}, err // at the limit: batch.ErrAtLimit, the attempt does not count
	}
	defer func() {
		rctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = slot.Release(rctx)
	}()
	ended := make(chan callpath.End, 1)
	var mu sync.Mutex
	var machine string // the last verdict: a late beep revises a human one
	conv, err := d.sip.PlaceCall(ctx, sip.OutboundCall{Company: co, Agent: a, From: from, To: c.Number, TrunkID: trunkID,
		DynamicVariables: c.DynamicVariables, Pace: c.Pace, RingTimeout: c.RingTimeout, MachineDetection: c.MachineDetection, HideCallerID: c.HideCallerID,
		OnMachineDetection: func(r amd.Result) {
			mu.Lock()
			machine = string(r.Verdict)
			mu.Unlock()
		},
		Done: func(e callpath.End) { ended <- e }})
	if err != nil {
		return failed, err
	}
	renew := time.NewTicker(10 * time.Second)
	defer renew.Stop()
	for {
		select {
		case e := <-ended:
			r := batchResult(e, conv.ID)
			mu.Lock()
			r.Machine = machine
			mu.Unlock()
			return r, nil
		case <-renew.C:
			rctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_ = slot.Renew(rctx)
			cancel()
		}
	}
}

// batchResult is how a call ended, as a batch records it.
func batchResult(e callpath.End, conv int64) batch.Result {
	r := batch.Result{SIPStatus: e.SIPStatus, ConversationID: conv}
	switch {
	case !e.AnsweredAt.IsZero():
		r.Outcome = batch.Answered
	case e.Outcome == callpath.OutcomeBusy:
		r.Outcome = batch.Busy
	case e.Outcome == callpath.OutcomeNoAnswer:
		r.Outcome = batch.NoAnswer
	case e.Outcome == callpath.OutcomeRejected:
		r.Outcome = batch.Rejected
	default:
		r.Outcome = batch.Failed
	}
	return r
}
