package control

import (
	"strings"

	"github.com/cxco/gateway/store"
)

// voiceView hides the catalogue's bookkeeping timestamps, as the reference does.
type voiceView struct {
	ID              int64          `json:"id"`
	ProviderID      int64          `json:"provider_id"`
	ExternalVoiceID string         `json:"external_voice_id"`
	Name            string         `json:"name"`
	Gender          *string        `json:"gender"`
	Accent          *string        `json:"accent"`
	Language        string         `json:"language"`
	PreviewURL      *string        `json:"preview_url"`
	Tags            map[string]any `json:"tags"`
	Status          string         `json:"status"`
}

func viewVoice(v *store.Voice) *voiceView {
	return &voiceView{ID: v.ID, ProviderID: v.ProviderID, ExternalVoiceID: v.ExternalVoiceID, Name: v.Name,
		Gender: v.Gender, Accent: v.Accent, Language: v.Language, PreviewURL: v.PreviewURL, Tags: v.Tags, Status: v.Status}
}

func (s *Server) listVoices(c *call) (result, error) {
	all, err := s.st.ListVoices(c.ctx)
	if err != nil {
		return result{}, err
	}
	lang, gender, accent := strings.ToLower(c.query("language")), strings.ToLower(c.query("gender")), strings.ToLower(c.query("accent"))
	out := []*voiceView{}
	for _, v := range all {
		if lang != "" && strings.ToLower(v.Language) != lang {
			continue
		}
		if gender != "" && (v.Gender == nil || strings.ToLower(*v.Gender) != gender) {
			continue
		}
		if accent != "" && (v.Accent == nil || strings.ToLower(*v.Accent) != accent) {
			continue
		}
		out = append(out, viewVoice(v))
	}
	return ok(out)
}

func (s *Server) getVoice(c *call) (result, error) {
	id, err := c.pathID("voice_id")
	if err != nil {
		return result{}, err
	}
	v, err := s.st.GetVoice(c.ctx, id)
	if err != nil {
		return result{}, err
	}
	if v.Status == store.VoiceRetired {
		return result{}, notFound("voice")
	}
	return ok(viewVoice(v))
}

var voiceFields = []string{"provider_id", "external_voice_id", "name", "gender", "accent", "language", "preview_url", "tags", "status"}

func readVoice(f *form, v *store.Voice, create bool) error {
	var err error
	set := func(dst **string, k string, maxLen int) {
		if err != nil {
			return
		}
		var p *string
		if p, err = f.str(k, false, 1, maxLen); err == nil && p != nil {
			*dst = p
		}
	}
	name, err := f.str("name", create, 1, 200)
	if err != nil {
		return err
	}
	if name != nil {
		v.Name = *name
	}
	ext, err := f.str("external_voice_id", create, 1, 100)
	if err != nil {
		return err
	}
	if ext != nil {
		v.ExternalVoiceID = *ext
	}
	lang, err := f.str("language", create, 1, 10)
	if err != nil {
		return err
	}
	if lang != nil {
		if v.Language, err = language("language", *lang); err != nil {
			return err
		}
	}
	set(&v.Gender, "gender", 20)
	set(&v.Accent, "accent", 50)
	set(&v.PreviewURL, "preview_url", 2000)
	if err != nil {
		return err
	}
	if tags, err := f.object("tags"); err != nil {
		return err
	} else if tags != nil {
		v.Tags = tags
	}
	if pid, err := f.integer("provider_id", false); err != nil {
		return err
	} else if pid != nil {
		v.ProviderID = *pid
	} else if create {
		v.ProviderID = 1
	}
	if st, err := f.str("status", false, 1, 20); err != nil {
		return err
	} else if st != nil {
		if err := oneOf("status", *st, store.VoiceActive, "inactive"); err != nil {
			return err
		}
		v.Status = *st
	}
	return nil
}

func (s *Server) createVoice(c *call) (result, error) {
	f, err := readForm(c.w, c.r, voiceFields...)
	if err != nil {
		return result{}, err
	}
	var v store.Voice
	if err := readVoice(f, &v, true); err != nil {
		return result{}, err
	}
	nv, err := s.st.CreateVoice(c.ctx, v)
	if err != nil {
		return result{}, err
	}
	return created(viewVoice(nv))
}

func (s *Server) putVoice(c *call) (result, error) {
	id, err := c.pathID("voice_id")
	if err != nil {
		return result{}, err
	}
	f, err := readForm(c.w, c.r, voiceFields...)
	if err != nil {
		return result{}, err
	}
	v, err := s.st.UpdateVoice(c.ctx, id, func(v *store.Voice) error { return readVoice(f, v, false) })
	if err != nil {
		return result{}, err
	}
	return ok(viewVoice(v))
}

func (s *Server) deleteVoice(c *call) (result, error) {
	id, err := c.pathID("voice_id")
	if err != nil {
		return result{}, err
	}
	if err := s.st.RetireVoice(c.ctx, id); err != nil {
		return result{}, err
	}
	return noContent()
}

func (s *Server) listProviders(c *call) (result, error) { return ok(store.Providers) }

func (s *Server) createCredential(c *call) (result, error) {
	slug := c.r.PathValue("slug")
	if _, found := store.ProviderBySlug(slug); !found {
		return result{}, notFound("provider " + slug)
	}
	f, err := readForm(c.w, c.r, "company_id", "credentials")
	if err != nil {
		return result{}, err
	}
	cid, err := f.integer("company_id", true)
	if err != nil {
		return result{}, err
	}
	if *cid < 1 {
		return result{}, invalid("company_id: must be a positive integer")
	}
	if *cid != c.companyID() {
		return result{}, notFound("company")
	}
	if err := f.required("credentials"); err != nil {
		return result{}, err
	}
	creds, err := f.object("credentials")
	if err != nil {
		return result{}, err
	}
	if len(creds) == 0 {
		return result{}, invalid("credentials: must not be empty")
	}
	if err := validateCredentials(slug, creds); err != nil {
		return result{}, err
	}
	cr, err := s.st.CreateCredential(c.ctx, c.companyID(), slug, creds)
	if err != nil {
		return result{}, err
	}
	return created(map[string]any{"id": cr.ID, "company_id": cr.CompanyID, "provider_id": cr.ProviderID,
		"status": cr.Status, "created_at": rfc3339(cr.CreatedAt)})
}

func (s *Server) deleteCredential(c *call) (result, error) {
	slug := c.r.PathValue("slug")
	if _, found := store.ProviderBySlug(slug); !found {
		return result{}, notFound("provider " + slug)
	}
	if err := s.st.DeleteCredential(c.ctx, c.companyID(), slug); err != nil {
		return result{}, err
	}
	return noContent()
}

// validateCredentials checks a provider's credentials: strings, with the
// voice-AI providers' own shapes (an api_key; your own bot's headers, an
// object of header names and values sent when the gateway dials the bot).
func validateCredentials(slug string, creds map[string]any) error {
	if slug == store.ProviderMediaStream {
		for k := range creds {
			if k != "headers" {
				return invalid("credentials.%s: unknown field (known: headers)", k)
			}
		}
		h, ok := creds["headers"].(map[string]any)
		if !ok || len(h) == 0 {
			return invalid("credentials.headers: must be an object of header names and string values, e.g. {\"Authorization\": \"Bearer ...\"}")
		}
		for k, v := range h {
			sv, isStr := v.(string)
			if !isStr || !headerName(k) || strings.ContainsAny(sv, "\r\n\x00") {
				return invalid("credentials.headers.%s: must be a valid header name with a string value", k)
			}
		}
		return nil
	}
	for k, v := range creds {
		if _, isStr := v.(string); !isStr {
			return invalid("credentials.%s: must be a string", k)
		}
	}
	if slug == store.ProviderElevenLabs || slug == store.ProviderOpenAI {
		if k, _ := creds["api_key"].(string); k == "" {
			return invalid("credentials.api_key: required")
		}
	}
	return nil
}

// headerName: an RFC 9110 field name (a token).
func headerName(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range []byte(s) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}
