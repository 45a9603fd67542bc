package sip

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	gsip "github.com/emiago/sipgo/sip"

	"github.com/cxco/gateway/callpath"
	"github.com/cxco/gateway/media"
	"github.com/cxco/gateway/store"
)

// Transfers the agent starts (RFC 3515 REFER with RFC 3420 sipfrag progress), and
// the bridged alternative: an outbound call to the destination through the trunk,
// with the gateway relaying audio between the two legs.

// Transfer errors; the bridge turns them into a client_tool_result with is_error.
var (
	ErrTransferRejected = errors.New("the trunk refused the transfer")
	ErrTransferFailed   = errors.New("the transfer did not connect")
	ErrTransferTimeout  = errors.New("the transfer did not complete in time")
	ErrTransferBusy     = errors.New("a transfer is already under way")
	// ErrReferNotSupported: the trunk answered REFER with 405 or 501 (a bridged transfer may still work).
	ErrReferNotSupported = errors.New("the trunk does not support REFER")
)

// transferState follows one REFER under way.
type transferState struct {
	progress chan int // sipfrag status codes from NOTIFYs
}

// Transfer implements Call: a REFER, or a bridged call when bridge is set or the
// trunk does not do REFER (405/501) and fallback is allowed by the agent.
func (c *call) Transfer(ctx context.Context, target string, bridge bool) error {
	if !c.transferMu.TryLock() {
		return ErrTransferBusy
	}
	defer c.transferMu.Unlock()
	start := time.Now()
	fallback := false
	if c.route != nil && c.route.agent != nil {
		cfg := store.ParseAgentConfig(c.route.agent.Config)
		fallback = cfg.Transfer.FallbackToBridge
	}
	c.log.Info("transfer requested", "target", target, "bridge", bridge)
	if !bridge {
		err := c.refer(ctx, target, start)
		if !errors.Is(err, ErrReferNotSupported) || !fallback {
			return err
		}
		c.log.Info("REFER not supported by the trunk: bridging the transfer instead", "target", target)
	}
	return c.bridgeTransfer(ctx, target, start)
}

// referTarget is the Refer-To URI: a sip: URI as given, an E.164 number at the trunk.
func (c *call) referTarget(target string) string {
	if strings.HasPrefix(strings.ToLower(target), "sip:") || strings.HasPrefix(strings.ToLower(target), "sips:") {
		return target
	}
	host := c.trunkHostPort()
	if c.trunk.hasURI && c.trunk.uri.Transport != "udp" {
		return "sip:" + target + "@" + host + ";transport=" + c.trunk.uri.Transport
	}
	return "sip:" + target + "@" + host
}

// trunkHostPort is the trunk URI's host:port, else the remote target's.
func (c *call) trunkHostPort() string {
	if c.trunk.hasURI {
		return c.trunk.uri.HostPort()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.remoteTarget.Port > 0 {
		return c.remoteTarget.Host + ":" + strconv.Itoa(c.remoteTarget.Port)
	}
	return c.remoteTarget.Host
}

// refer sends REFER and follows its NOTIFYs until a final sipfrag. On success the
// call ends as transferred with our BYE; on failure it goes on.
func (c *call) refer(ctx context.Context, target string, start time.Time) error {
	st := &transferState{progress: make(chan int, 16)}
	c.mu.Lock()
	c.xfer = st
	c.mu.Unlock()
	defer func() { c.mu.Lock(); c.xfer = nil; c.mu.Unlock() }()

	req := c.newRequest(gsip.REFER)
	req.AppendHeader(gsip.NewHeader("Refer-To", "<"+c.referTarget(target)+">"))
	req.AppendHeader(c.referredBy())
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	res, err := c.s.cli.Do(rctx, req)
	cancel()
	if err != nil {
		return fmt.Errorf("%w: REFER: %w", ErrTransferFailed, err)
	}
	switch {
	case res.StatusCode == 405 || res.StatusCode == 501:
		return fmt.Errorf("%w (%d %s)", ErrReferNotSupported, res.StatusCode, res.Reason)
	case res.StatusCode >= 300:
		return fmt.Errorf("%w: %d %s", ErrTransferRejected, res.StatusCode, res.Reason)
	}
	c.log.Info("REFER accepted", "status", res.StatusCode, "target", target)
	// While the trunk connects the destination the caller hears ringback.
	ringCtx, stopRing := context.WithCancel(ctx)
	defer stopRing()
	c.cp.Go(func() { c.ringback(ringCtx) })
	deadline := time.NewTimer(c.s.opt.TransferTimeout)
	defer deadline.Stop()
	for {
		select {
		case code := <-st.progress:
			switch {
			case code < 200:
				continue
			case code < 300:
				c.log.Info("transfer connected", "target", target, "sipfrag", code)
				c.cp.End(callpath.End{Reason: callpath.Transferred, Outcome: callpath.OutcomeTransferred,
					ReferTo: target, ReferSeconds: int(time.Since(start).Seconds() + 0.5)})
				return nil
			default:
				return fmt.Errorf("%w: %d", ErrTransferFailed, code)
			}
		case <-deadline.C:
			return fmt.Errorf("%w (%s)", ErrTransferTimeout, c.s.opt.TransferTimeout)
		case <-c.cp.Done():
			return fmt.Errorf("%w: the call ended", ErrTransferFailed)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// referredBy is the Referred-By of our transfers: the dialled number at our address.
func (c *call) referredBy() gsip.Header {
	return gsip.NewHeader("Referred-By", fmt.Sprintf("<sip:%s@%s>", c.called, c.host()))
}

// onReferNotify takes a NOTIFY of the REFER under way (Event: refer, message/sipfrag);
// false when there is none. deliver hands its sipfrag status to the transfer: call
// it once the NOTIFY is answered.
func (c *call) onReferNotify(req *gsip.Request) (deliver func(), ok bool) {
	c.mu.Lock()
	st := c.xfer
	c.mu.Unlock()
	if st == nil {
		return nil, false
	}
	ev := strings.ToLower(headerValue(req, "Event", "o"))
	if !strings.HasPrefix(ev, "refer") {
		return nil, false
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(req.Body())), "\n")
	f := strings.Fields(line)
	code := 0
	if len(f) >= 2 && strings.HasPrefix(f[0], "SIP/") {
		code, _ = strconv.Atoi(f[1])
	}
	return func() {
		if code == 0 {
			return
		}
		select {
		case st.progress <- code:
		default:
		}
	}, true
}

// bridgeTransfer calls the destination through the trunk (dial) and, once it
// answers, relays audio between the caller and it: the destination's leg
// becomes the call's far leg (callpath.Call.Bridge) and the agent leaves.
func (c *call) bridgeTransfer(ctx context.Context, target string, start time.Time) error {
	format := c.agent.Format()
	legCallID := gsip.GenerateTagN(24) + "@" + c.advertise.String()
	c.s.trace.alias(legCallID, c.callID) // the leg's messages join the call's SIP ladder
	// While it rings the caller hears ringback.
	ringCtx, stopRing := context.WithCancel(ctx)
	c.cp.Go(func() { c.ringback(ringCtx) })
	actx, cancel := context.WithTimeout(ctx, c.s.opt.TransferTimeout)
	// The human sees the original caller's number.
	leg, neg, err := c.s.dial(actx, dialOptions{trunk: c.trunk, target: c.referTarget(target), dest: c.source, transport: c.transport,
		advertise: c.advertise, fromUser: c.caller, callID: legCallID, headers: []gsip.Header{c.referredBy()},
		log: c.log.With("leg", "transfer"), onBye: func() { c.cp.End(callpath.End{Reason: callpath.TransferHangup}) }})
	cancel()
	stopRing()
	if err != nil {
		var de *dialError
		switch {
		case errors.As(err, &de) && de.Timeout:
			return fmt.Errorf("%w (%s)", ErrTransferTimeout, c.s.opt.TransferTimeout)
		case errors.As(err, &de) && de.Status != 0:
			return fmt.Errorf("%w: %d %s", ErrTransferFailed, de.Status, de.Phrase)
		}
		return fmt.Errorf("%w: %w", ErrTransferFailed, err)
	}
	// Audio between the legs: the destination's frames are played to the caller
	// (f.Audio is the frame in the format both legs use, PCM as little-endian bytes).
	if err := leg.stream.Start(neg, media.Consumer{Format: format, Sink: func(f media.Frame) { _ = c.stream.Play(f.Audio) }}); err != nil {
		hctx, hcancel := context.WithTimeout(context.Background(), 5*time.Second)
		leg.Hangup(hctx, callpath.End{})
		hcancel()
		return fmt.Errorf("%w: media: %w", ErrTransferFailed, err)
	}
	c.stream.Discard() // what is left of the ringback
	c.log.Info("bridged transfer connected", "target", target)
	c.cp.Bridge(leg, target, start) // the caller now talks to the destination; the agent leaves
	c.s.kickLive()
	return nil
}

// ringback plays ringing to the caller until ctx ends.
func (c *call) ringback(ctx context.Context) {
	select {
	case <-c.stream.Drained(): // the agent's last words first
	case <-ctx.Done():
		return
	}
	tone := media.Ringback(c.agent.Format())
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		_ = c.stream.Play(tone)
		select {
		case <-ctx.Done():
			c.stream.Discard() // not barge-in: the ringing just stops
			return
		case <-c.cp.Done():
			return
		case <-t.C:
		}
	}
}
