package bridge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/cxco/gateway/store"
)

// Provisioner keeps agents in step with the provider, with each company's own
// provider credentials (else the platform's).
type Provisioner struct {
	Client      *Client
	Store       *store.Store
	PlatformKey string
	Log         *slog.Logger
}

// APIKey is the key to call the provider with for a company: its stored elevenlabs
// credential's api_key, else the platform key.
func (p *Provisioner) APIKey(ctx context.Context, cid int64) (string, error) {
	creds, err := p.Store.CredentialSecrets(ctx, cid, "elevenlabs")
	if errors.Is(err, store.ErrNotFound) {
		return p.PlatformKey, nil
	}
	if err != nil {
		return "", err
	}
	if k, ok := creds["api_key"].(string); ok && k != "" {
		return k, nil
	}
	return p.PlatformKey, nil
}

// Spec turns a stored agent into what the provider is told.
func (p *Provisioner) Spec(ctx context.Context, a *store.Agent) (AgentSpec, error) {
	v, err := p.Store.GetVoice(ctx, a.VoiceID)
	if err != nil {
		return AgentSpec{}, fmt.Errorf("voice %d: %w", a.VoiceID, err)
	}
	cfg := store.ParseAgentConfig(a.Config)
	spec := AgentSpec{
		Name: a.Name, Prompt: a.Personality, FirstMessage: a.OpeningLine, Language: a.Language,
		VoiceID: v.ExternalVoiceID, Temperature: cfg.Temperature, MaxDuration: cfg.MaxCallDuration,
		AudioFormat: cfg.AudioFormat, Tags: []string{"cxco", fmt.Sprintf("company:%d", a.CompanyID), fmt.Sprintf("agent:%d", a.ID)},
	}
	for _, t := range cfg.Transfer.Destinations {
		cond := t.Condition
		if t.Label != "" {
			cond = t.Label + ": " + cond
		}
		spec.Transfers = append(spec.Transfers, Transfer{Number: t.Number, Condition: cond})
	}
	return spec, nil
}

// CreateAgent creates the agent at the provider and returns its id.
func (p *Provisioner) CreateAgent(ctx context.Context, a *store.Agent) (string, error) {
	key, err := p.APIKey(ctx, a.CompanyID)
	if err != nil {
		return "", err
	}
	spec, err := p.Spec(ctx, a)
	if err != nil {
		return "", err
	}
	return p.Client.CreateAgent(ctx, key, spec)
}

// UpdateAgent pushes an agent's new configuration.
func (p *Provisioner) UpdateAgent(ctx context.Context, a *store.Agent) error {
	if a.ExternalAgentID == nil {
		return nil
	}
	key, err := p.APIKey(ctx, a.CompanyID)
	if err != nil {
		return err
	}
	spec, err := p.Spec(ctx, a)
	if err != nil {
		return err
	}
	return p.Client.UpdateAgent(ctx, key, *a.ExternalAgentID, spec)
}

// DeleteAgent removes the agent at the provider.
func (p *Provisioner) DeleteAgent(ctx context.Context, cid int64, externalID string) error {
	key, err := p.APIKey(ctx, cid)
	if err != nil {
		return err
	}
	return p.Client.DeleteAgent(ctx, key, externalID)
}
