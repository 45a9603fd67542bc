package control

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/url"
	"strconv"
	"strings"

	"github.com/cxco/gateway/store"
)

// validateConfig checks an agent's config object: known keys with typed, bounded values.
func validateConfig(cfg map[string]any) error {
	for k, v := range cfg {
		field := "config." + k
		switch k {
		case "temperature":
			n, ok := v.(float64)
			if !ok || n < 0 || n > 2 {
				return invalid("%s: must be a number between 0 and 2", field)
			}
		case "max_call_duration_seconds":
			n, ok := v.(float64)
			if !ok || n != math.Trunc(n) || n < 10 || n > 14400 {
				return invalid("%s: must be an integer between 10 and 14400", field)
			}
		case "audio_format":
			s, _ := v.(string)
			if err := oneOf(field, s, "ulaw_8000", "pcm_16000"); err != nil {
				return err
			}
		case "user_audio_chunk_ms":
			n, ok := v.(float64)
			if !ok || n != math.Trunc(n) || n < 20 || n > 1000 || int(n)%20 != 0 {
				return invalid("%s: must be a multiple of 20 between 20 and 1000", field)
			}
		case "transfer":
			if err := validateTransfer(v); err != nil {
				return err
			}
		case "keypad":
			if err := validateKeypad(v); err != nil {
				return err
			}
		default:
			return invalid("%s: unknown field (known: temperature, max_call_duration_seconds, audio_format, user_audio_chunk_ms, transfer, keypad)", field)
		}
	}
	return nil
}

func validateTransfer(v any) error {
	t, ok := v.(map[string]any)
	if !ok {
		return invalid("config.transfer: must be an object")
	}
	for k, tv := range t {
		switch k {
		case "mode":
			s, _ := tv.(string)
			if err := oneOf("config.transfer.mode", s, "refer", "bridge"); err != nil {
				return err
			}
		case "fallback_to_bridge":
			if _, ok := tv.(bool); !ok {
				return invalid("config.transfer.fallback_to_bridge: must be true or false")
			}
		case "destinations":
			list, ok := tv.([]any)
			if !ok {
				return invalid("config.transfer.destinations: must be an array")
			}
			if len(list) > 20 {
				return invalid("config.transfer.destinations: at most 20")
			}
			for i, d := range list {
				if err := validateDestination(i, d); err != nil {
					return err
				}
			}
		default:
			return invalid("config.transfer.%s: unknown field (known: mode, fallback_to_bridge, destinations)", k)
		}
	}
	return nil
}

// validateKeypad checks config.keypad: how keypad digits reach the agent.
func validateKeypad(v any) error {
	k, ok := v.(map[string]any)
	if !ok {
		return invalid("config.keypad: must be an object")
	}
	for key, kv := range k {
		switch key {
		case "mode":
			s, _ := kv.(string)
			if err := oneOf("config.keypad.mode", s, store.KeypadModes...); err != nil {
				return err
			}
		case "inter_digit_timeout_ms":
			n, ok := kv.(float64)
			if !ok || n != math.Trunc(n) || n < 200 || n > 10000 {
				return invalid("config.keypad.inter_digit_timeout_ms: must be an integer between 200 and 10000")
			}
		default:
			return invalid("config.keypad.%s: unknown field (known: mode, inter_digit_timeout_ms)", key)
		}
	}
	return nil
}

func validateDestination(i int, d any) error {
	m, ok := d.(map[string]any)
	prefix := "config.transfer.destinations[" + itoa(i) + "]"
	if !ok {
		return invalid("%s: must be an object", prefix)
	}
	for k := range m {
		if k != "number" && k != "condition" && k != "label" {
			return invalid("%s.%s: unknown field (known: number, condition, label)", prefix, k)
		}
	}
	num, _ := m["number"].(string)
	if !validDestination(num) {
		return invalid("%s.number: %q must be an E.164 number or a sip: URI", prefix, num)
	}
	cond, _ := m["condition"].(string)
	if strings.TrimSpace(cond) == "" || len(cond) > 1000 {
		return invalid("%s.condition: required, at most 1000 characters", prefix)
	}
	if l, present := m["label"]; present {
		if s, ok := l.(string); !ok || len(s) > 100 {
			return invalid("%s.label: must be a string of at most 100 characters", prefix)
		}
	}
	return nil
}

// validDestination accepts an E.164 number or a sip:/sips: URI with a host.
func validDestination(s string) bool {
	if _, ok := NormalizeE164(s); ok && strings.HasPrefix(s, "+") {
		return true
	}
	lower := strings.ToLower(s)
	if !strings.HasPrefix(lower, "sip:") && !strings.HasPrefix(lower, "sips:") {
		return false
	}
	rest := s[strings.IndexByte(s, ':')+1:]
	if strings.ContainsAny(rest, " <>\"") {
		return false
	}
	host := rest
	if at := strings.LastIndexByte(rest, '@'); at >= 0 {
		if at == 0 {
			return false
		}
		host = rest[at+1:]
	}
	host, _, _ = strings.Cut(host, ";")
	u, err := url.Parse("sip://" + host)
	return err == nil && u.Hostname() != ""
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
	return nil
}

var agentFieldNames = []string{"name", "personality", "opening_line", "voice_id", "language", "config"}

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
	// nothing changes here either.
	if next.ExternalAgentID != nil && (next.Status == store.AgentActive || next.Status == store.AgentPaused) {
		if err := s.opts.Provisioner.UpdateAgent(c.ctx, &next); err != nil {
			return result{}, err
		}
	}
	a, err = s.st.UpdateAgent(c.ctx, a.CompanyID, a.ID, func(cur *store.Agent) error {
		cur.Name, cur.Personality, cur.OpeningLine = next.Name, next.Personality, next.OpeningLine
		cur.VoiceID, cur.Language, cur.Config = next.VoiceID, next.Language, next.Config
		if next.Provider != nil {
			cur.Provider = next.Provider
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
