package elevenlabs

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/cxco/gateway/store"
)

// Provisioner keeps agents in step with the provider, with each company's own
// provider credentials (else the platform's).
//
// An agent belongs to the provider account of the key that created it, so each
// agent records which credential that was (store.ProviderBinding.Credential: the
// platform's, or the company's by fingerprint) and is always reached with it: a
// company that adds its own key, or replaces it, keeps its existing agents
// working. The company's keys are kept sealed under their fingerprint for that
// (store.KeepCredential); no key is stored or logged in plain text.
type Provisioner struct {
	Client      *Client
	Store       *store.Store
	PlatformKey string
	Log         *slog.Logger
}

const providerSlug = "elevenlabs"

// Fingerprint names a key without revealing it: the first 16 hex digits of its SHA-256.
func Fingerprint(key string) string {
	sum := sha256.Sum256([]byte("cxco provider credential\x00" + key))
	return hex.EncodeToString(sum[:8])
}

// credential is the key new agents of a company are created with: its stored
// elevenlabs api_key, else the platform key; and how to record it.
func (p *Provisioner) credential(ctx context.Context, cid int64) (key, ref string, creds map[string]any, err error) {
	creds, err = p.Store.CredentialSecrets(ctx, cid, providerSlug)
	if errors.Is(err, store.ErrNotFound) {
		return p.PlatformKey, store.CredentialPlatform, nil, nil
	}
	if err != nil {
		return "", "", nil, err
	}
	if k, ok := creds["api_key"].(string); ok && k != "" {
		return k, store.CredentialCompany + Fingerprint(k), creds, nil
	}
	return p.PlatformKey, store.CredentialPlatform, nil, nil
}

// APIKey is the key new agents of a company are created with.
func (p *Provisioner) APIKey(ctx context.Context, cid int64) (string, error) {
	key, _, _, err := p.credential(ctx, cid)
	return key, err
}

// KeyFor is the key an existing agent is reached with: the one that created it.
// An agent from before bindings were recorded uses the company's current key.
func (p *Provisioner) KeyFor(ctx context.Context, a *store.Agent) (string, error) {
	if a.Provider == nil || a.Provider.Credential == "" {
		return p.APIKey(ctx, a.CompanyID)
	}
	ref := a.Provider.Credential
	if ref == store.CredentialPlatform {
		return p.PlatformKey, nil
	}
	fp, ok := strings.CutPrefix(ref, store.CredentialCompany)
	if !ok {
		return "", fmt.Errorf("agent %d: unknown provider credential %q", a.ID, ref)
	}
	creds, err := p.Store.KeptCredential(ctx, a.CompanyID, providerSlug, fp)
	if errors.Is(err, store.ErrNotFound) {
		return "", fmt.Errorf("%w: the key that created agent %d (fingerprint %s) is no longer stored; republish the agent", ErrProvider, a.ID, fp)
	}
	if err != nil {
		return "", err
	}
	k, _ := creds["api_key"].(string)
	return k, nil
}

// DefaultVoiceID is the ElevenLabs voice of agents whose own voice is another
// provider's (Rachel, a premade voice every account has).
const DefaultVoiceID = "21m00Tcm4TlvDq8ikWAM"

// Spec turns a stored agent into what the provider is told.
func (p *Provisioner) Spec(ctx context.Context, a *store.Agent) (AgentSpec, error) {
	v, err := p.Store.GetVoice(ctx, a.VoiceID)
	if err != nil {
		return AgentSpec{}, fmt.Errorf("voice %d: %w", a.VoiceID, err)
	}
	voice := v.ExternalVoiceID
	if v.ProviderID != store.ProviderID(store.ProviderElevenLabs) {
		// An agent of another provider with ElevenLabs as its fallback: its
		// voice is not one of ElevenLabs', so the fallback speaks with Rachel.
		voice = DefaultVoiceID
	}
	cfg := store.ParseAgentConfig(a.Config)
	spec := AgentSpec{
		Name: a.Name, Prompt: a.Personality, FirstMessage: a.OpeningLine, Language: a.Language,
		VoiceID: voice, Temperature: cfg.Temperature, MaxDuration: cfg.MaxCallDuration,
		AudioFormat: cfg.AudioFormat, Tags: []string{"cxco", fmt.Sprintf("company:%d", a.CompanyID), fmt.Sprintf("agent:%d", a.ID)},
	}
	for _, t := range cfg.Transfer.Destinations {
		spec.Transfers = append(spec.Transfers, Transfer{Destination: t.Number, Label: t.Label, Condition: t.Condition})
	}
	return spec, nil
}

// CreateAgent creates the agent at the provider, private, with its transfer tool
// when it has destinations, under the company's key (else the platform's).
func (p *Provisioner) CreateAgent(ctx context.Context, a *store.Agent) (store.ProviderAgent, error) {
	key, ref, creds, err := p.credential(ctx, a.CompanyID)
	if err != nil {
		return store.ProviderAgent{}, err
	}
	spec, err := p.Spec(ctx, a)
	if err != nil {
		return store.ProviderAgent{}, err
	}
	if creds != nil {
		if err := p.Store.KeepCredential(ctx, a.CompanyID, providerSlug, strings.TrimPrefix(ref, store.CredentialCompany), creds); err != nil {
			return store.ProviderAgent{}, err
		}
	}
	b := &store.ProviderBinding{Credential: ref}
	var toolIDs []string
	if len(spec.Transfers) > 0 {
		id, err := p.Client.CreateTool(ctx, key, spec.transferTool())
		if err != nil {
			return store.ProviderAgent{}, err
		}
		b.ToolIDs = map[string]string{TransferTool: id}
		toolIDs = []string{id}
	}
	id, err := p.Client.CreateAgent(ctx, key, spec, toolIDs)
	if err != nil {
		p.deleteTools(context.WithoutCancel(ctx), key, b)
		return store.ProviderAgent{}, err
	}
	return store.ProviderAgent{ID: id, Binding: b}, nil
}

// UpdateAgent pushes an agent's new configuration, creating, updating or
// removing its transfer tool to match its destinations. It updates a.Provider;
// the caller stores it.
func (p *Provisioner) UpdateAgent(ctx context.Context, a *store.Agent) error {
	if a.ExternalAgentID == nil {
		return nil
	}
	key, err := p.KeyFor(ctx, a)
	if err != nil {
		return err
	}
	spec, err := p.Spec(ctx, a)
	if err != nil {
		return err
	}
	b := &store.ProviderBinding{Credential: store.CredentialPlatform}
	if a.Provider != nil {
		b.Credential = a.Provider.Credential
	} else if _, ref, _, err := p.credential(ctx, a.CompanyID); err == nil {
		b.Credential = ref
	}
	old := ""
	if a.Provider != nil {
		old = a.Provider.ToolIDs[TransferTool]
	}
	toolID, created := old, false
	if len(spec.Transfers) > 0 {
		if old != "" {
			err = p.Client.UpdateTool(ctx, key, old, spec.transferTool())
			var se *StatusError
			if errors.As(err, &se) && se.Status == 404 {
				old, err = "", nil // gone at the provider: make it again
			}
			if err != nil {
				return err
			}
		}
		if old == "" {
			if toolID, err = p.Client.CreateTool(ctx, key, spec.transferTool()); err != nil {
				return err
			}
			created = true
		}
		b.ToolIDs = map[string]string{TransferTool: toolID}
	}
	var toolIDs []string
	if len(spec.Transfers) > 0 {
		toolIDs = []string{toolID}
	}
	if err := p.Client.UpdateAgent(ctx, key, *a.ExternalAgentID, spec, toolIDs); err != nil {
		if created {
			p.deleteTools(context.WithoutCancel(ctx), key, b)
		}
		return err
	}
	if len(spec.Transfers) == 0 && old != "" {
		// The agent no longer lists it; the tool itself goes too.
		p.deleteTools(ctx, key, &store.ProviderBinding{ToolIDs: map[string]string{TransferTool: old}})
	}
	a.Provider = b
	return nil
}

// DeleteAgent removes the agent and its tools at the provider, with the key that
// created it; one already gone is fine, any other failure is returned.
func (p *Provisioner) DeleteAgent(ctx context.Context, a *store.Agent) error {
	if a.ExternalAgentID == nil {
		return nil
	}
	return p.Delete(ctx, a.CompanyID, store.ProviderAgent{ID: *a.ExternalAgentID, Binding: a.Provider})
}

// Delete removes what CreateAgent made (also to undo a publish that failed later).
func (p *Provisioner) Delete(ctx context.Context, cid int64, made store.ProviderAgent) error {
	key, err := p.KeyFor(ctx, &store.Agent{CompanyID: cid, Provider: made.Binding})
	if err != nil {
		return err
	}
	if err := p.Client.DeleteAgent(ctx, key, made.ID); err != nil {
		return err
	}
	if made.Binding != nil {
		for name, id := range made.Binding.ToolIDs {
			if err := p.Client.DeleteTool(ctx, key, id); err != nil {
				return fmt.Errorf("tool %s: %w", name, err)
			}
		}
	}
	return nil
}

func (p *Provisioner) deleteTools(ctx context.Context, key string, b *store.ProviderBinding) {
	for name, id := range b.ToolIDs {
		if err := p.Client.DeleteTool(ctx, key, id); err != nil && p.Log != nil {
			p.Log.Warn("could not delete a tool at the provider", "tool", name, "tool_id", id, "err", err)
		}
	}
}

// SignedURL gets a signed conversation URL for the agent with the key that created
// it. When the provider refuses that key (401/403: revoked after the company
// rotated it within the same account) and the company's current key is another
// one, that is tried; if it works, the agent is bound to it from then on.
func (p *Provisioner) SignedURL(ctx context.Context, a *store.Agent) (string, error) {
	key, err := p.KeyFor(ctx, a)
	if err != nil {
		return "", err
	}
	u, err := p.Client.SignedURL(ctx, key, *a.ExternalAgentID)
	var se *StatusError
	if err == nil || !errors.As(err, &se) || (se.Status != 401 && se.Status != 403) || a.Provider == nil {
		return u, err
	}
	cur, ref, _, cerr := p.credential(ctx, a.CompanyID)
	if cerr != nil || ref == a.Provider.Credential || cur == "" {
		return "", err
	}
	u, err2 := p.Client.SignedURL(ctx, cur, *a.ExternalAgentID)
	if err2 != nil {
		return "", err
	}
	if _, uerr := p.Store.UpdateAgent(context.WithoutCancel(ctx), a.CompanyID, a.ID, func(x *store.Agent) error {
		if x.Provider != nil {
			x.Provider.Credential = ref
		}
		return nil
	}); uerr != nil && p.Log != nil {
		p.Log.Warn("could not record the agent's new provider credential", "agent_id", a.ID, "err", uerr)
	}
	if p.Log != nil {
		p.Log.Info("agent moved to the company's current provider key", "agent_id", a.ID, "credential", ref)
	}
	return u, nil
}
