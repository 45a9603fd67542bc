package control

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cxco/gateway/store"
)

// WhatsAppVerifier decides a number's WhatsApp Business verification. A real Meta
// verifier implements it; the built-in one approves every number.
type WhatsAppVerifier interface {
	// Verify returns the WhatsApp id of an approved number, or an error for a refusal.
	Verify(ctx context.Context, pn *store.PhoneNumber) (externalID string, err error)
}

// BuiltinVerifier approves every number (the delay is the enable call's).
type BuiltinVerifier struct{}

// Verify approves the number.
func (BuiltinVerifier) Verify(_ context.Context, pn *store.PhoneNumber) (string, error) {
	return fmt.Sprintf("wa_%d_%s", pn.ID, pn.Number[1:]), nil
}

// ErrVerifyTemporary marks a verifier error worth retrying (the job runs again after its lease).
var ErrVerifyTemporary = errors.New("verification temporarily failed")

func (s *Server) kickWhatsApp() {
	select {
	case s.waKick <- struct{}{}:
	default:
	}
}

// RunWhatsApp verifies numbers as their verification falls due, until ctx ends.
// Every gateway node runs it; each verification is handled by one of them.
func (s *Server) RunWhatsApp(ctx context.Context, v WhatsAppVerifier) {
	if v == nil {
		v = BuiltinVerifier{}
	}
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	var failingSince, lastLog time.Time // an outage is logged when it starts and every 30 s, not every tick
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-s.waKick:
		}
		jobs, err := s.st.ClaimDueWhatsApp(ctx, time.Now(), time.Minute, 50)
		if err != nil {
			now := time.Now()
			if failingSince.IsZero() {
				failingSince = now
			}
			if ctx.Err() == nil && now.Sub(lastLog) > 30*time.Second {
				s.log.Warn("whatsapp: cannot claim verifications", "err", err, "failing_for", now.Sub(failingSince).Round(time.Second))
				lastLog = now
			}
			continue
		}
		if !failingSince.IsZero() {
			s.log.Info("whatsapp: verifications resumed", "after", time.Since(failingSince).Round(time.Second))
			failingSince, lastLog = time.Time{}, time.Time{}
		}
		for _, j := range jobs {
			s.verifyOne(ctx, v, j)
		}
	}
}

func (s *Server) verifyOne(ctx context.Context, v WhatsAppVerifier, j store.WhatsAppJob) {
	log := s.log.With("company_id", j.CompanyID, "phone_number_id", j.PhoneNumberID)
	pn, err := s.st.CompanyNumber(ctx, j.CompanyID, j.PhoneNumberID)
	if errors.Is(err, store.ErrNotFound) || (err == nil && pn.WhatsAppStatus != store.WhatsAppPending) {
		_ = s.st.FinishWhatsAppJob(ctx, j) // released or changed meanwhile: nothing to verify
		return
	}
	if err != nil {
		log.Warn("whatsapp: cannot read number", "err", err)
		return
	}
	ext, verr := v.Verify(ctx, pn)
	if errors.Is(verr, ErrVerifyTemporary) {
		log.Warn("whatsapp: verification will be retried", "err", verr)
		return
	}
	if _, err := s.st.CompleteWhatsApp(ctx, j.CompanyID, j.PhoneNumberID, verr == nil, ext); err != nil && !errors.Is(err, store.ErrConflict) {
		log.Warn("whatsapp: cannot record verification", "err", err)
		return
	}
	if err := s.st.FinishWhatsAppJob(ctx, j); err != nil {
		log.Warn("whatsapp: cannot finish job", "err", err)
	}
	log.Info("whatsapp verification finished", "approved", verr == nil)
}
