package bridge

import (
	"context"

	"github.com/cxco/gateway/store"
)

// AgentProvisioner keeps agents in step with a provider where agents live at the
// provider (ElevenLabs: elevenlabs.Provisioner).
type AgentProvisioner interface {
	CreateAgent(ctx context.Context, a *store.Agent) (store.ProviderAgent, error)
	UpdateAgent(ctx context.Context, a *store.Agent) error
	DeleteAgent(ctx context.Context, a *store.Agent) error
	Delete(ctx context.Context, cid int64, made store.ProviderAgent) error
}

// Provisioning is the control plane's provisioner over every provider: OpenAI
// Realtime sessions and your own bot are configured per call, so only agents
// that use ElevenLabs — as their provider or their fallback — are made, kept in
// step and deleted there.
type Provisioning struct {
	ElevenLabs AgentProvisioner
}

func usesElevenLabs(a *store.Agent) bool {
	return store.ProviderOf(a) == store.ProviderElevenLabs || a.FallbackProvider == store.ProviderElevenLabs
}

// CreateAgent makes the agent at ElevenLabs when it uses it; otherwise there is
// nothing to make (the ProviderAgent has no id).
func (p Provisioning) CreateAgent(ctx context.Context, a *store.Agent) (store.ProviderAgent, error) {
	if !usesElevenLabs(a) {
		return store.ProviderAgent{}, nil
	}
	return p.ElevenLabs.CreateAgent(ctx, a)
}

// UpdateAgent pushes a live agent's change to ElevenLabs; an agent that starts
// using ElevenLabs (a new provider or fallback) is made there now, and a.
// ExternalAgentID and a.Provider say so. One that stops using it keeps its
// ElevenLabs agent until it is archived (it costs nothing idle and keeps the
// way back open).
func (p Provisioning) UpdateAgent(ctx context.Context, a *store.Agent) error {
	switch {
	case a.ExternalAgentID != nil:
		return p.ElevenLabs.UpdateAgent(ctx, a)
	case usesElevenLabs(a):
		made, err := p.ElevenLabs.CreateAgent(ctx, a)
		if err != nil {
			return err
		}
		a.ExternalAgentID, a.Provider = &made.ID, made.Binding
	}
	return nil
}

// DeleteAgent removes the agent at ElevenLabs if it was made there.
func (p Provisioning) DeleteAgent(ctx context.Context, a *store.Agent) error {
	if a.ExternalAgentID == nil {
		return nil
	}
	return p.ElevenLabs.DeleteAgent(ctx, a)
}

// Delete undoes a CreateAgent.
func (p Provisioning) Delete(ctx context.Context, cid int64, made store.ProviderAgent) error {
	if made.ID == "" {
		return nil
	}
	return p.ElevenLabs.Delete(ctx, cid, made)
}
