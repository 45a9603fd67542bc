package store

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// Agent statuses: draft → active (publish) ⇄ paused (pause/resume) → archived (from any).
const (
	AgentDraft    = "draft"
	AgentActive   = "active"
	AgentPaused   = "paused"
	AgentArchived = "archived"
)

// AgentStatuses lists every status, for validation.
var AgentStatuses = []string{AgentDraft, AgentActive, AgentPaused, AgentArchived}

// Agent is a configured AI persona, as stored.
type Agent struct {
	ID              int64          `json:"id"`
	CompanyID       int64          `json:"company_id"`
	Name            string         `json:"name"`
	Personality     string         `json:"personality"`
	OpeningLine     string         `json:"opening_line"`
	VoiceID         int64          `json:"voice_id"`
	Language        string         `json:"language"`
	Status          string         `json:"status"`
	VoiceEnabled    bool           `json:"voice_enabled"`
	WhatsAppEnabled bool           `json:"whatsapp_enabled"`
	ExternalAgentID *string        `json:"external_agent_id"`
	PhoneNumberID   *int64         `json:"phone_number_id"`
	Config          map[string]any `json:"config"`
	// VoiceProvider is the slug of the voice-AI provider the agent's calls go
	// to (empty: ElevenLabs, for agents from before there was a choice), and
	// FallbackProvider the one they go to when it cannot be reached.
	VoiceProvider    string `json:"voice_provider,omitempty"`
	FallbackProvider string `json:"fallback_provider,omitempty"`
	// Provider is how the agent lives at its voice-AI provider (not shown by the API).
	Provider  *ProviderBinding `json:"provider,omitempty"`
	CreatedAt time.Time        `json:"created_at"`
	UpdatedAt time.Time        `json:"updated_at"`
}

// Credentials an agent was created with at its provider (ProviderBinding.Credential).
const (
	CredentialPlatform = "platform" // the platform's key (--provider-api-key)
	CredentialCompany  = "company:" // + the fingerprint of the company's key (KeepCredential)
)

// ProviderBinding is what the gateway needs to reach an agent at its provider: the
// credential that created it (an agent belongs to that key's account), and the
// ids of the provider-side tools made for it.
type ProviderBinding struct {
	Credential string            `json:"credential"`
	ToolIDs    map[string]string `json:"tool_ids,omitempty"` // our tool name -> the provider's tool id
}

// ProviderAgent is an agent as created at the provider.
type ProviderAgent struct {
	ID      string
	Binding *ProviderBinding
}

// AgentView is the agent as the API shows it (and as events carry it).
type AgentView struct {
	ID              int64    `json:"id"`
	CompanyID       int64    `json:"company_id"`
	Name            string   `json:"name"`
	Personality     string   `json:"personality"`
	OpeningLine     string   `json:"opening_line"`
	Voice           VoiceRef `json:"voice"`
	Language        string   `json:"language"`
	Status          string   `json:"status"`
	VoiceEnabled    bool     `json:"voice_enabled"`
	WhatsAppEnabled bool     `json:"whatsapp_enabled"`
	ExternalAgentID *string  `json:"external_agent_id,omitempty"`
	// Provider is the slug of the voice-AI provider the agent's calls go to;
	// FallbackProvider the one they go to when it cannot be reached.
	Provider         string         `json:"provider"`
	FallbackProvider *string        `json:"fallback_provider"`
	PhoneNumber      *PhoneRef      `json:"phone_number,omitempty"`
	Config           map[string]any `json:"config"`
	CreatedAt        time.Time      `json:"created_at"`
	UpdatedAt        time.Time      `json:"updated_at"`
}

// VoiceRef is the short form of a voice inside an agent.
type VoiceRef struct {
	ID   int64  `json:"id"`
	Name string `json:"name"`
}

// PhoneRef is the short form of a number inside an agent.
type PhoneRef struct {
	ID              int64  `json:"id"`
	Number          string `json:"number"`
	VoiceEnabled    bool   `json:"voice_enabled"`
	WhatsAppEnabled bool   `json:"whatsapp_enabled"`
	WhatsAppStatus  string `json:"whatsapp_status"`
}

func agentIdx(cid int64, status string) string {
	if status == "" {
		return keyAgents(cid)
	}
	return keyAgentsSt(cid, status)
}

// CreateAgent stores a new draft agent.
func (s *Store) CreateAgent(ctx context.Context, a Agent) (*Agent, error) {
	id, err := s.nextID(ctx, "agent")
	if err != nil {
		return nil, err
	}
	now := s.Now()
	a.ID, a.Status, a.VoiceEnabled, a.CreatedAt, a.UpdatedAt = id, AgentDraft, true, now, now
	a.ExternalAgentID, a.PhoneNumberID = nil, nil
	b, err := marshal(a)
	if err != nil {
		return nil, err
	}
	_, err = s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, keyAgent(a.CompanyID, id), b, 0)
		p.ZAdd(ctx, keyAgents(a.CompanyID), redis.Z{Score: float64(id), Member: id})
		p.ZAdd(ctx, keyAgentsSt(a.CompanyID, AgentDraft), redis.Z{Score: float64(id), Member: id})
		return nil
	})
	if err != nil {
		return nil, wrapRedis(err)
	}
	return &a, nil
}

// GetAgent reads an agent of the company.
func (s *Store) GetAgent(ctx context.Context, cid, aid int64) (*Agent, error) {
	var a Agent
	if err := s.getJSON(ctx, keyAgent(cid, aid), &a); err != nil {
		return nil, err
	}
	return &a, nil
}

// GetAgents reads many agents of the company with one pipeline; missing ones are left out.
func (s *Store) GetAgents(ctx context.Context, cid int64, ids []int64) ([]*Agent, error) {
	keys := make([]string, len(ids))
	for i, id := range ids {
		keys[i] = keyAgent(cid, id)
	}
	return getJSONs[Agent](ctx, s, keys)
}

// ListAgents pages through a company's agents, newest first, optionally by status.
func (s *Store) ListAgents(ctx context.Context, cid int64, status string, cursor int64, limit int) (Page[Agent], error) {
	return pageRecords[Agent](ctx, s, agentIdx(cid, status), cursor, limit,
		func(id int64) string { return keyAgent(cid, id) }, nil, func(a *Agent) int64 { return a.ID })
}

// AgentViews renders agents as the API shows them, reading voices and numbers in one pipeline each.
func (s *Store) AgentViews(ctx context.Context, agents []*Agent) ([]*AgentView, error) {
	voiceKeys := make([]string, len(agents))
	var pnIDs []int64
	for i, a := range agents {
		voiceKeys[i] = keyVoice(a.VoiceID)
		if a.PhoneNumberID != nil {
			pnIDs = append(pnIDs, *a.PhoneNumberID)
		}
	}
	voices, err := getJSONs[Voice](ctx, s, voiceKeys)
	if err != nil {
		return nil, err
	}
	names := make(map[int64]string, len(voices))
	for _, v := range voices {
		names[v.ID] = v.Name
	}
	pns := map[int64]*PhoneNumber{}
	if len(pnIDs) > 0 {
		list, err := s.getNumbers(ctx, pnIDs)
		if err != nil {
			return nil, err
		}
		if len(list) > 0 {
			if list, err = s.withWhatsApp(ctx, agents[0].CompanyID, list); err != nil {
				return nil, err
			}
		}
		for _, pn := range list {
			pns[pn.ID] = pn
		}
	}
	out := make([]*AgentView, len(agents))
	for i, a := range agents {
		var pn *PhoneNumber
		if a.PhoneNumberID != nil {
			pn = pns[*a.PhoneNumberID]
		}
		out[i] = a.view(names[a.VoiceID], pn)
	}
	return out, nil
}

// AgentView renders one agent.
func (s *Store) AgentView(ctx context.Context, a *Agent) (*AgentView, error) {
	v, err := s.AgentViews(ctx, []*Agent{a})
	if err != nil {
		return nil, err
	}
	return v[0], nil
}

func (a *Agent) view(voiceName string, pn *PhoneNumber) *AgentView {
	v := &AgentView{ID: a.ID, CompanyID: a.CompanyID, Name: a.Name, Personality: a.Personality,
		OpeningLine: a.OpeningLine, Voice: VoiceRef{ID: a.VoiceID, Name: voiceName}, Language: a.Language,
		Status: a.Status, VoiceEnabled: a.VoiceEnabled, WhatsAppEnabled: a.WhatsAppEnabled,
		ExternalAgentID: a.ExternalAgentID, Config: a.Config, CreatedAt: a.CreatedAt, UpdatedAt: a.UpdatedAt,
		Provider: ProviderOf(a)}
	if a.FallbackProvider != "" {
		fb := a.FallbackProvider
		v.FallbackProvider = &fb
	}
	if v.Config == nil {
		v.Config = map[string]any{}
	}
	if pn != nil {
		v.PhoneNumber = &PhoneRef{ID: pn.ID, Number: pn.Number, VoiceEnabled: a.VoiceEnabled,
			WhatsAppEnabled: pn.WhatsAppStatus == WhatsAppActive, WhatsAppStatus: pn.WhatsAppStatus}
	}
	return v
}

// stateConflict is the 409 for an action that does not fit the agent's state.
func stateConflict(a *Agent, action string) error {
	return conflict(fmt.Sprintf("agent %d is %s; cannot %s it", a.ID, a.Status, action))
}

// UpdateAgent changes an agent that is not archived with fn.
func (s *Store) UpdateAgent(ctx context.Context, cid, aid int64, fn func(*Agent) error) (*Agent, error) {
	return mutate(ctx, s, keyAgent(cid, aid), nil, func(a *Agent, _ redis.Pipeliner) error {
		if a.Status == AgentArchived {
			return stateConflict(a, "update")
		}
		if err := fn(a); err != nil {
			return err
		}
		a.UpdatedAt = s.Now()
		return nil
	})
}

// transition moves an agent between statuses and records agent.status_changed in the
// same transaction. prepare runs inside (it may run more than once).
func (s *Store) transition(ctx context.Context, cid, aid int64, action string, from []string, to string, pre *agentPre, prepare func(a *Agent, p redis.Pipeliner) error) (*Agent, error) {
	return mutate(ctx, s, keyAgent(cid, aid), nil, func(a *Agent, p redis.Pipeliner) error {
		ok := false
		for _, f := range from {
			ok = ok || a.Status == f
		}
		if !ok {
			return stateConflict(a, action)
		}
		p.ZRem(ctx, keyAgentsSt(cid, a.Status), aid)
		p.ZAdd(ctx, keyAgentsSt(cid, to), redis.Z{Score: float64(aid), Member: aid})
		a.Status, a.UpdatedAt = to, s.Now()
		if prepare != nil {
			if err := prepare(a, p); err != nil {
				return err
			}
		}
		var pn *PhoneNumber
		if pre != nil && a.PhoneNumberID != nil {
			pn = pre.number
		}
		name := ""
		if pre != nil {
			name = pre.voiceName
		}
		if err := s.queueEvent(ctx, p, cid, EventAgentStatusChanged, a.view(name, pn)); err != nil {
			return err
		}
		return nil
	})
}

// agentPre holds what an agent's view needs from other hash slots, read before a transaction.
type agentPre struct {
	voiceName string
	number    *PhoneNumber
}

func (s *Store) preRead(ctx context.Context, a *Agent, pnid *int64) (*agentPre, error) {
	pre := &agentPre{}
	if v, err := s.GetVoice(ctx, a.VoiceID); err == nil {
		pre.voiceName = v.Name
	}
	if pnid != nil {
		pn, err := s.GetNumber(ctx, *pnid)
		if err != nil {
			return nil, err
		}
		list, err := s.withWhatsApp(ctx, a.CompanyID, []*PhoneNumber{pn})
		if err != nil {
			return nil, err
		}
		pre.number = list[0]
	}
	return pre, nil
}

// PauseAgent takes an active agent offline; it keeps its number.
func (s *Store) PauseAgent(ctx context.Context, cid, aid int64) (*Agent, error) {
	return s.simpleTransition(ctx, cid, aid, "pause", []string{AgentActive}, AgentPaused)
}

// ResumeAgent brings a paused agent back.
func (s *Store) ResumeAgent(ctx context.Context, cid, aid int64) (*Agent, error) {
	return s.simpleTransition(ctx, cid, aid, "resume", []string{AgentPaused}, AgentActive)
}

func (s *Store) simpleTransition(ctx context.Context, cid, aid int64, action string, from []string, to string) (*Agent, error) {
	a, err := s.GetAgent(ctx, cid, aid)
	if err != nil {
		return nil, err
	}
	pre, err := s.preRead(ctx, a, a.PhoneNumberID)
	if err != nil {
		return nil, err
	}
	return s.transition(ctx, cid, aid, action, from, to, pre, nil)
}

// ProviderCreate creates the agent at the voice-AI provider; ProviderDelete undoes it.
type (
	ProviderCreate func(ctx context.Context, a *Agent) (ProviderAgent, error)
	ProviderDelete func(ctx context.Context, a ProviderAgent)
)

// PublishAgent makes a draft agent live: it takes a number of the country from the
// pool (atomically: racing publishes never share a number), creates the agent at the
// provider, and commits active status, number, external id and the status event in
// one transaction. Any failure puts the number back and leaves the agent a draft.
func (s *Store) PublishAgent(ctx context.Context, cid, aid int64, country string, create ProviderCreate, undo ProviderDelete) (*Agent, error) {
	a, err := s.GetAgent(ctx, cid, aid)
	if err != nil {
		return nil, err
	}
	if a.Status != AgentDraft {
		return nil, conflict(fmt.Sprintf("agent %d is %s; only a draft agent can be published", a.ID, a.Status))
	}
	token := NewEventID()
	got, err := s.rdb.SetNX(ctx, keyAgentLock(cid, aid), token, time.Minute).Result()
	if err != nil {
		return nil, wrapRedis(err)
	}
	if !got {
		return nil, conflict(fmt.Sprintf("agent %d is being published by another request", aid))
	}
	defer unlockScript.Run(context.WithoutCancel(ctx), s.rdb, []string{keyAgentLock(cid, aid)}, token)

	pnid, err := s.allocateNumber(ctx, country, cid, aid)
	if err != nil {
		if err == ErrNoNumber {
			return nil, &ConflictError{Detail: "no phone number is available for country " + country}
		}
		return nil, err
	}
	release := func() {
		if err := s.releaseNumber(context.WithoutCancel(ctx), pnid, aid); err != nil {
			s.log.Error("publish: could not return the number to the pool", "phone_number_id", pnid, "agent_id", aid, "err", err)
		}
	}
	made, err := create(ctx, a)
	if err != nil {
		release()
		return nil, err
	}
	pre, err := s.preRead(ctx, a, &pnid)
	if err == nil {
		a, err = s.transition(ctx, cid, aid, "publish", []string{AgentDraft}, AgentActive, pre, func(a *Agent, p redis.Pipeliner) error {
			a.PhoneNumberID, a.Provider = &pnid, made.Binding
			if made.ID != "" { // an agent that lives at its provider (ElevenLabs)
				a.ExternalAgentID = &made.ID
			}
			return nil
		})
	}
	if err != nil {
		release()
		undo(context.WithoutCancel(ctx), made)
		return nil, err
	}
	return a, nil
}

var unlockScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`)

// ArchiveAgent decommissions an agent from any state but archived: the number goes
// back to the pool. It returns the agent and the provider id it had. The caller
// deletes the agent at the provider first (ArchiveAgent does not reach it).
func (s *Store) ArchiveAgent(ctx context.Context, cid, aid int64) (*Agent, *string, error) {
	a, err := s.GetAgent(ctx, cid, aid)
	if err != nil {
		return nil, nil, err
	}
	pre, err := s.preRead(ctx, a, nil)
	if err != nil {
		return nil, nil, err
	}
	var pnid *int64
	var ext *string
	a, err = s.transition(ctx, cid, aid, "archive", []string{AgentDraft, AgentActive, AgentPaused}, AgentArchived, pre,
		func(a *Agent, p redis.Pipeliner) error {
			pnid, ext = a.PhoneNumberID, a.ExternalAgentID
			if pnid != nil {
				p.Del(ctx, keyPNWA(cid, *pnid))
			}
			// The provider's agent is deleted: an archived agent no longer shows its id.
			a.PhoneNumberID, a.ExternalAgentID, a.WhatsAppEnabled, a.Provider = nil, nil, false, nil
			return nil
		})
	if err != nil {
		return nil, nil, err
	}
	if pnid != nil {
		if err := s.releaseNumber(ctx, *pnid, aid); err != nil {
			return a, ext, err
		}
	}
	return a, ext, nil
}
