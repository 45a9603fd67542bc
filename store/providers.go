package store

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"
)

// Provider is a service the platform connects to.
type Provider struct {
	ID     int64          `json:"id"`
	Slug   string         `json:"slug"`
	Name   string         `json:"name"`
	Type   string         `json:"type"`
	Status string         `json:"status"`
	Config map[string]any `json:"config,omitempty"`
}

// Slugs of the voice-AI providers.
const (
	ProviderElevenLabs  = "elevenlabs"
	ProviderOpenAI      = "openai"
	ProviderMediaStream = "mediastream"
)

// VoiceProviders are the slugs of the voice-AI providers an agent can use.
var VoiceProviders = []string{ProviderElevenLabs, ProviderOpenAI, ProviderMediaStream}

// ProviderSlug is the slug of the provider with id (""for none).
func ProviderSlug(id int64) string {
	for _, p := range Providers {
		if p.ID == id {
			return p.Slug
		}
	}
	return ""
}

// ProviderOf is the slug of the voice-AI provider an agent's calls go to.
func ProviderOf(a *Agent) string {
	if a.VoiceProvider != "" {
		return a.VoiceProvider
	}
	return ProviderElevenLabs
}

// Providers is the fixed list of providers the gateway works with.
var Providers = []Provider{
	{ID: 1, Slug: "elevenlabs", Name: "ElevenLabs", Type: "voice_provider", Status: "active",
		Config: map[string]any{"credential_fields": []string{"api_key"}}},
	{ID: 2, Slug: "sip_trunk", Name: "SIP Trunk Provider", Type: "sip_trunk", Status: "active",
		Config: map[string]any{"credential_fields": []string{"username", "password"}}},
	{ID: 3, Slug: "meta_whatsapp", Name: "Meta WhatsApp Business", Type: "messaging", Status: "active",
		Config: map[string]any{"credential_fields": []string{"access_token", "business_account_id"}}},
	{ID: 4, Slug: ProviderOpenAI, Name: "OpenAI Realtime", Type: "voice_provider", Status: "active",
		Config: map[string]any{"credential_fields": []string{"api_key"}}},
	{ID: 5, Slug: ProviderMediaStream, Name: "Your own bot (Twilio Media Streams format)", Type: "voice_provider", Status: "active",
		Config: map[string]any{"credential_fields": []string{"headers"}}},
}

// ProviderID is the id of the provider with slug (0 for none).
func ProviderID(slug string) int64 {
	p, _ := ProviderBySlug(slug)
	return p.ID
}

// ProviderBySlug finds a provider.
func ProviderBySlug(slug string) (Provider, bool) {
	for _, p := range Providers {
		if p.Slug == slug {
			return p, true
		}
	}
	return Provider{}, false
}

// Credential is a company's stored credentials for one provider. Only the sealed
// form is kept; the API never reads it back.
type Credential struct {
	ID         int64     `json:"id"`
	CompanyID  int64     `json:"company_id"`
	ProviderID int64     `json:"provider_id"`
	Status     string    `json:"status"`
	CreatedAt  time.Time `json:"created_at"`
	Sealed     string    `json:"sealed,omitempty"`
}

func credAD(cid int64, slug string) string { return "credential:" + itoa(cid) + ":" + slug }

// CreateCredential seals and stores credentials; a second set for the same provider is a conflict.
func (s *Store) CreateCredential(ctx context.Context, cid int64, slug string, creds map[string]any) (*Credential, error) {
	p, ok := ProviderBySlug(slug)
	if !ok {
		return nil, ErrNotFound
	}
	id, err := s.nextID(ctx, "credential")
	if err != nil {
		return nil, err
	}
	plain, err := marshal(creds)
	if err != nil {
		return nil, err
	}
	c := &Credential{ID: id, CompanyID: cid, ProviderID: p.ID, Status: "active", CreatedAt: s.Now(),
		Sealed: s.sealer.Seal(plain, credAD(cid, slug))}
	b, err := marshal(c)
	if err != nil {
		return nil, err
	}
	set, err := s.rdb.SetNX(ctx, keyCred(cid, slug), b, 0).Result()
	if err != nil {
		return nil, wrapRedis(err)
	}
	if !set {
		return nil, conflict("credentials for provider " + slug + " already exist for this company; delete them first")
	}
	c.Sealed = ""
	return c, nil
}

// DeleteCredential removes a company's credentials for a provider.
func (s *Store) DeleteCredential(ctx context.Context, cid int64, slug string) error {
	n, err := s.rdb.Del(ctx, keyCred(cid, slug)).Result()
	if err != nil {
		return wrapRedis(err)
	}
	if n == 0 {
		return ErrNotFound
	}
	return nil
}

// CredentialSecrets opens a company's credentials for a provider, for the gateway's
// own use (calling the provider). ErrNotFound when there are none.
func (s *Store) CredentialSecrets(ctx context.Context, cid int64, slug string) (map[string]any, error) {
	b, err := s.rdb.Get(ctx, keyCred(cid, slug)).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, wrapRedis(err)
	}
	var c Credential
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, err
	}
	pt, err := s.sealer.Open(c.Sealed, credAD(cid, slug))
	if err != nil {
		return nil, err
	}
	var m map[string]any
	return m, json.Unmarshal(pt, &m)
}

func credRingAD(cid int64, slug, fp string) string {
	return "credring:" + itoa(cid) + ":" + slug + ":" + fp
}

// KeepCredential keeps a company's credentials under their fingerprint (sealed, as
// the active ones are), so that what was created with them at a provider can
// still be reached after the company replaces or deletes its credentials: a
// provider's agents belong to the account of the key that created them.
func (s *Store) KeepCredential(ctx context.Context, cid int64, slug, fingerprint string, creds map[string]any) error {
	plain, err := marshal(creds)
	if err != nil {
		return err
	}
	sealed := s.sealer.Seal(plain, credRingAD(cid, slug, fingerprint))
	return wrapRedis(s.rdb.HSet(ctx, keyCredRing(cid, slug), fingerprint, sealed).Err())
}

// KeptCredential opens credentials kept with KeepCredential; ErrNotFound when there
// are none under that fingerprint.
func (s *Store) KeptCredential(ctx context.Context, cid int64, slug, fingerprint string) (map[string]any, error) {
	sealed, err := s.rdb.HGet(ctx, keyCredRing(cid, slug), fingerprint).Result()
	if errors.Is(err, redis.Nil) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, wrapRedis(err)
	}
	pt, err := s.sealer.Open(sealed, credRingAD(cid, slug, fingerprint))
	if err != nil {
		return nil, err
	}
	var m map[string]any
	return m, json.Unmarshal(pt, &m)
}
