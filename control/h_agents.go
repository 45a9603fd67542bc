package control

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/cxco/gateway/store"
)

// validateConfig checks an agent's config object: known keys with typed, bounded
// values (store.DecodeAgentConfig, which the call path reads it with too).
func validateConfig(cfg map[string]any) error {
	if _, err := store.DecodeAgentConfig(cfg); err != nil {
		return invalid("%s", err)
	}
	return nil
}

func itoa(i int) string { return strconv.Itoa(i) }

// agentFields reads the create/update fields into a; create says which are required.
func (s *Server) agentFields(c *call, f *form, a *store.Agent, create bool) error {
	name, err := f.str("name", create, 1, 200)
	if err != nil {
		return err
	}
	if name != nil {
		a.Name = *name
	}
	pers, err := f.str("personality", create, 1, 20000)
	if err != nil {
		return err
	}
	if pers != nil {
		a.Personality = *pers
	}
	ol, err := f.str("opening_line", create, 1, 2000)
	if err != nil {
		return err
	}
	if ol != nil {
		a.OpeningLine = *ol
	}
	vid, err := f.integer("voice_id", create)
	if err != nil {
		return err
	}
	if vid != nil {
		v, err := s.st.GetVoice(c.ctx, *vid)
		if errors.Is(err, store.ErrNotFound) || (err == nil && v.Status == store.VoiceRetired && *vid != a.VoiceID) {
			return invalid("voice_id: voice %d does not exist", *vid)
		}
		if err == nil && v.Status != store.VoiceActive && *vid != a.VoiceID {
			return invalid("voice_id: voice %d is %s and cannot be chosen", *vid, v.Status)
		}
		if err != nil {
			return err
		}
		a.VoiceID = *vid
		if create {
			// The voice's provider unless the agent names one.
			a.VoiceProvider = store.ProviderSlug(v.ProviderID)
		}
	}
	if f.present("provider") {
		p, err := f.str("provider", false, 1, 40)
		if err != nil {
			return err
		}
		if p != nil {
			if err := oneOf("provider", *p, store.VoiceProviders...); err != nil {
				return err
			}
			a.VoiceProvider = *p
		}
	}
	if f.isNull("fallback_provider") {
		a.FallbackProvider = ""
	} else if f.present("fallback_provider") {
		p, err := f.str("fallback_provider", false, 1, 40)
		if err != nil {
			return err
		}
		if err := oneOf("fallback_provider", *p, store.VoiceProviders...); err != nil {
			return err
		}
		a.FallbackProvider = *p
	}
	if a.FallbackProvider != "" && a.FallbackProvider == store.ProviderOf(a) {
		return invalid("fallback_provider: must differ from provider (%s)", store.ProviderOf(a))
	}
	lang, err := f.str("language", false, 1, 10)
	if err != nil {
		return err
	}
	if lang != nil {
		if a.Language, err = language("language", *lang); err != nil {
			return err
		}
	} else if create {
		a.Language = "en"
	}
	if f.present("config") {
		cfg, err := f.object("config")
		if err != nil {
			return err
		}
		// A partial update merges config key by key; null removes a key.
		merged := map[string]any{}
		for k, v := range a.Config {
			merged[k] = v
		}
		for k, v := range cfg {
			if v == nil {
				delete(merged, k)
				continue
			}
			merged[k] = v
		}
		if err := validateConfig(merged); err != nil {
			return err
		}
		a.Config = merged
	} else if create {
		a.Config = map[string]any{}
	}
	if uses(a, store.ProviderMediaStream) && store.ParseAgentConfig(a.Config).Bot.URL == "" {
		return invalid("config.bot.url: required when the agent's provider or fallback_provider is mediastream (your own bot's wss:// URL)")
	}
	return nil
}

// uses says whether slug is the agent's provider or its fallback.
func uses(a *store.Agent, slug string) bool {
	return store.ProviderOf(a) == slug || a.FallbackProvider == slug
}

var agentFieldNames = []string{"name", "personality", "opening_line", "voice_id", "language", "config", "provider", "fallback_provider"}

func (s *Server) createAgent(c *call) (result, error) {
	f, err := readForm(c.w, c.r, agentFieldNames...)
	if err != nil {
		return result{}, err
	}
	a := &store.Agent{CompanyID: c.companyID()}
	if err := s.agentFields(c, f, a, true); err != nil {
		return result{}, err
	}
	a, err = s.st.CreateAgent(c.ctx, *a)
	if err != nil {
		return result{}, err
	}
	return s.agentResult(c, a, true)
}

func (s *Server) agentResult(c *call, a *store.Agent, isNew bool) (result, error) {
	v, err := s.st.AgentView(c.ctx, a)
	if err != nil {
		return result{}, err
	}
	if isNew {
		return created(v)
	}
	return ok(v)
}

func (s *Server) listAgents(c *call) (result, error) {
	cursor, limit, err := c.paging()
	if err != nil {
		return result{}, err
	}
	status := c.query("status")
	if status != "" {
		if err := oneOf("status", status, store.AgentStatuses...); err != nil {
			return result{}, err
		}
	}
	page, err := s.st.ListAgents(c.ctx, c.companyID(), status, cursor, limit)
	if err != nil {
		return result{}, err
	}
	views, err := s.st.AgentViews(c.ctx, page.Items)
	if err != nil {
		return result{}, err
	}
	return ok(newPage(views, page.HasMore, page.NextCursor))
}

func (c *call) agent() (*store.Agent, error) {
	id, err := c.pathID("agent_id")
	if err != nil {
		return nil, err
	}
	return c.s.st.GetAgent(c.ctx, c.companyID(), id)
}

func (s *Server) getAgent(c *call) (result, error) {
	a, err := c.agent()
	if err != nil {
		return result{}, err
	}
	return s.agentResult(c, a, false)
}

func (s *Server) putAgent(c *call) (result, error) {
	a, err := c.agent()
	if err != nil {
		return result{}, err
	}
	f, err := readForm(c.w, c.r, agentFieldNames...)
	if err != nil {
		return result{}, err
	}
	if a.Status == store.AgentArchived {
		return result{}, &store.ConflictError{Detail: "agent " + itoa(int(a.ID)) + " is archived; cannot update it"}
	}
	next := *a
	if err := s.agentFields(c, f, &next, false); err != nil {
		return result{}, err
	}
	// A live agent's change reaches the provider first: if the provider refuses it,
	// nothing changes here either. (The provisioner decides which providers keep
	// agents: it may make one now, for an agent that starts using ElevenLabs.)
	if next.Status == store.AgentActive || next.Status == store.AgentPaused {
		if err := s.opts.Provisioner.UpdateAgent(c.ctx, &next); err != nil {
			return result{}, err
		}
	}
	a, err = s.st.UpdateAgent(c.ctx, a.CompanyID, a.ID, func(cur *store.Agent) error {
		cur.Name, cur.Personality, cur.OpeningLine = next.Name, next.Personality, next.OpeningLine
		cur.VoiceID, cur.Language, cur.Config = next.VoiceID, next.Language, next.Config
		cur.VoiceProvider, cur.FallbackProvider = next.VoiceProvider, next.FallbackProvider
		if next.Provider != nil {
			cur.Provider = next.Provider
		}
		if next.ExternalAgentID != nil {
			cur.ExternalAgentID = next.ExternalAgentID
		}
		return nil
	})
	if err != nil {
		return result{}, err
	}
	return s.agentResult(c, a, false)
}

func (s *Server) archiveAgent(c *call) (result, error) {
	id, err := c.pathID("agent_id")
	if err != nil {
		return result{}, err
	}
	force := false
	if v := c.query("force"); v != "" {
		if force, err = strconv.ParseBool(v); err != nil {
			return result{}, invalid("force: must be true or false")
		}
	}
	cur, err := s.st.GetAgent(c.ctx, c.companyID(), id)
	if err != nil {
		return result{}, err
	}
	if cur.Status == store.AgentArchived {
		return result{}, &store.ConflictError{Detail: "agent " + itoa(int(id)) + " is archived already"}
	}
	// The provider's agent goes first: an archive never reports success for an
	// agent that still runs (and bills) at the provider, unless force says to
	// archive here anyway.
	if err := s.opts.Provisioner.DeleteAgent(c.ctx, cur); err != nil {
		if !force {
			return result{}, fmt.Errorf("could not delete the agent at the voice-AI provider, so it was not archived (retry, or archive with ?force=true to leave it at the provider): %w", err)
		}
		s.log.Warn("archive with force: the agent stays at the provider", "agent_id", id, "external_agent_id", cur.ExternalAgentID, "err", err)
	}
	a, _, err := s.st.ArchiveAgent(c.ctx, c.companyID(), id)
	if err != nil {
		return result{}, err
	}
	return s.agentResult(c, a, false)
}

func (s *Server) publishAgent(c *call) (result, error) {
	id, err := c.pathID("agent_id")
	if err != nil {
		return result{}, err
	}
	f, err := readForm(c.w, c.r, "country_code")
	if err != nil {
		return result{}, err
	}
	cc := "ZA"
	if v, err := f.str("country_code", false, 1, 4); err != nil {
		return result{}, err
	} else if v != nil {
		if cc, err = countryCode("country_code", *v); err != nil {
			return result{}, err
		}
	}
	a, err := s.st.PublishAgent(c.ctx, c.companyID(), id, cc, s.opts.Provisioner.CreateAgent,
		func(ctx context.Context, made store.ProviderAgent) {
			if err := s.opts.Provisioner.Delete(ctx, c.companyID(), made); err != nil {
				s.log.Warn("publish: could not undo the agent at the provider", "agent_id", id, "external_agent_id", made.ID, "err", err)
			}
		})
	if err != nil {
		return result{}, err
	}
	return s.agentResult(c, a, false)
}

func (s *Server) pauseAgent(c *call) (result, error) {
	id, err := c.pathID("agent_id")
	if err != nil {
		return result{}, err
	}
	a, err := s.st.PauseAgent(c.ctx, c.companyID(), id)
	if err != nil {
		return result{}, err
	}
	return s.agentResult(c, a, false)
}

func (s *Server) resumeAgent(c *call) (result, error) {
	id, err := c.pathID("agent_id")
	if err != nil {
		return result{}, err
	}
	a, err := s.st.ResumeAgent(c.ctx, c.companyID(), id)
	if err != nil {
		return result{}, err
	}
	return s.agentResult(c, a, false)
}
