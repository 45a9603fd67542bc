package store

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// EnableWhatsApp starts WhatsApp verification of a number assigned to one of the
// company's agents: the number becomes pending and a verification is due at due.
func (s *Store) EnableWhatsApp(ctx context.Context, cid, pnid int64, due time.Time) (*PhoneNumber, error) {
	pn, err := s.CompanyNumber(ctx, cid, pnid)
	if err != nil {
		return nil, err
	}
	if pn.AgentID == nil {
		return nil, conflict("phone number is not assigned to an agent")
	}
	switch pn.WhatsAppStatus {
	case WhatsAppPending:
		return nil, conflict("WhatsApp verification of this number is already pending")
	case WhatsAppActive:
		return nil, conflict("WhatsApp is already active on this number")
	}
	st := WhatsAppState{Status: WhatsAppPending, UpdatedAt: s.Now()}
	b, err := marshal(st)
	if err != nil {
		return nil, err
	}
	if err := s.rdb.Set(ctx, keyPNWA(cid, pnid), b, 0).Err(); err != nil {
		return nil, wrapRedis(err)
	}
	member := itoa(cid) + ":" + itoa(pnid)
	if err := s.rdb.ZAdd(ctx, keyWADue(), redis.Z{Score: float64(due.UnixMilli()), Member: member}).Err(); err != nil {
		return nil, wrapRedis(err)
	}
	pn.WhatsAppStatus, pn.WhatsAppExternalID = WhatsAppPending, nil
	return pn, nil
}

// WhatsAppJob is a verification that is due.
type WhatsAppJob struct {
	CompanyID, PhoneNumberID int64
	member                   string
}

// Claiming moves a due job's score a lease into the future, so exactly one caller
// (across gateway nodes) gets it now, and a caller that dies before finishing leaves
// it to be claimed again when the lease runs out.
var claimWAScript = redis.NewScript(`
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
for _, m in ipairs(due) do redis.call('ZADD', KEYS[1], ARGV[2], m) end
return due`)

// ClaimDueWhatsApp takes verifications that are due, each for lease.
func (s *Store) ClaimDueWhatsApp(ctx context.Context, now time.Time, lease time.Duration, limit int) ([]WhatsAppJob, error) {
	due, err := claimWAScript.Run(ctx, s.rdb, []string{keyWADue()}, now.UnixMilli(), now.Add(lease).UnixMilli(), limit).StringSlice()
	if err != nil {
		return nil, wrapRedis(err)
	}
	jobs := make([]WhatsAppJob, 0, len(due))
	for _, m := range due {
		a, b, _ := strings.Cut(m, ":")
		jobs = append(jobs, WhatsAppJob{CompanyID: parseID(a), PhoneNumberID: parseID(b), member: m})
	}
	return jobs, nil
}

// FinishWhatsAppJob forgets a job once it has been handled.
func (s *Store) FinishWhatsAppJob(ctx context.Context, j WhatsAppJob) error {
	return wrapRedis(s.rdb.ZRem(ctx, keyWADue(), j.member).Err())
}

// CompleteWhatsApp records the verifier's answer for a pending number: the number's
// WhatsApp state, the agent's whatsapp_enabled and the phone_number.whatsapp_verified
// event change together. The state is checked to be pending inside the transaction
// (WATCH on it and on the agent), so two verifiers racing on one job record one
// answer and one event; the loser gets a conflict.
func (s *Store) CompleteWhatsApp(ctx context.Context, cid, pnid int64, ok bool, externalID string) (*PhoneNumber, error) {
	noPending := conflict("phone number has no pending WhatsApp verification")
	pn, err := s.CompanyNumber(ctx, cid, pnid)
	if err != nil {
		return nil, err
	}
	if pn.WhatsAppStatus != WhatsAppPending || pn.AgentID == nil {
		return nil, noPending
	}
	status := WhatsAppFailed
	var ext *string
	if ok {
		status = WhatsAppActive
		ext = &externalID
	}
	now := s.Now()
	aid := *pn.AgentID
	pn.WhatsAppStatus, pn.WhatsAppExternalID, pn.UpdatedAt = status, ext, now
	_, err = mutate(ctx, s, keyPNWA(cid, pnid), []string{keyAgent(cid, aid)}, func(st *WhatsAppState, p redis.Pipeliner) error {
		if st.Status != WhatsAppPending {
			return noPending
		}
		a, err := s.GetAgent(ctx, cid, aid) // after WATCH: a change before EXEC aborts and retries
		if err != nil {
			return err
		}
		if a.PhoneNumberID == nil || *a.PhoneNumberID != pnid {
			return errors.New("store: the number moved to another agent during verification")
		}
		a.WhatsAppEnabled, a.UpdatedAt = ok, now
		b, err := marshal(a)
		if err != nil {
			return err
		}
		p.Set(ctx, keyAgent(cid, aid), b, 0)
		*st = WhatsAppState{Status: status, ExternalID: ext, UpdatedAt: now}
		return s.queueEvent(ctx, p, cid, EventWhatsAppVerified, pn)
	})
	if errors.Is(err, ErrNotFound) {
		return nil, noPending
	}
	if err != nil {
		return nil, err
	}
	return pn, nil
}
