package store

import (
	"context"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Voice is one entry of the voice catalogue.
type Voice struct {
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
	CreatedAt       time.Time      `json:"created_at"`
	UpdatedAt       time.Time      `json:"updated_at"`
}

// Voice statuses. A retired voice is gone from the catalogue but agents that use it keep it.
const (
	VoiceActive  = "active"
	VoiceRetired = "retired"
)

func sp(s string) *string { return &s }

// defaultVoices is the catalogue every gateway starts with (ElevenLabs premade voices).
func defaultVoices() []Voice {
	v := func(id int64, ext, name, gender, accent, style, tone string) Voice {
		return Voice{ID: id, ProviderID: 1, ExternalVoiceID: ext, Name: name, Gender: sp(gender), Accent: sp(accent),
			Language: "en", PreviewURL: sp("https://cdn.example.com/voices/" + lower(name) + "_preview.mp3"),
			Tags: map[string]any{"style": style, "tone": tone}, Status: VoiceActive}
	}
	return []Voice{
		v(1, "21m00Tcm4TlvDq8ikWAM", "Rachel", "female", "american", "conversational", "warm"),
		v(2, "29vD33N1CtxCmqQRPOHJ", "James", "male", "british", "authoritative", "calm"),
		v(3, "AZnzlk1XvdvUeBnXmlld", "Domi", "female", "american", "energetic", "bright"),
		v(4, "ErXwobaYiN019PkySvjV", "Antoni", "male", "american", "friendly", "warm"),
		v(5, "pFZP5JQG7iQjIQuC4Bku", "Lily", "female", "british", "narration", "soft"),
		v(6, "onwK4e9ZLuTAKqWW03F9", "Daniel", "male", "british", "news", "deep"),
	}
}

func lower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + 32
		}
	}
	return string(b)
}

// seedVoices writes the default catalogue the first time a store is used.
func (s *Store) seedVoices(ctx context.Context) error {
	first, err := s.rdb.SetNX(ctx, keyVoices()+":seeded", 1, 0).Result()
	if err != nil || !first {
		return wrapRedis(err)
	}
	now := s.Now()
	_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		var maxID int64
		for _, v := range defaultVoices() {
			v.CreatedAt, v.UpdatedAt = now, now
			b, err := marshal(v)
			if err != nil {
				return err
			}
			p.Set(ctx, keyVoice(v.ID), b, 0)
			p.ZAdd(ctx, keyVoices(), redis.Z{Score: float64(v.ID), Member: v.ID})
			maxID = max(maxID, v.ID)
		}
		p.SetNX(ctx, keySeq("voice"), maxID, 0)
		return nil
	})
	return wrapRedis(err)
}

// openAIVoices are OpenAI Realtime's built-in voices (the Realtime reference's
// session.audio.output.voice: alloy, ash, ballad, coral, echo, sage, shimmer,
// verse, marin, cedar; OpenAI recommends marin and cedar). The reference says
// nothing of gender or accent, so the catalogue leaves them empty; every one
// speaks the languages the model does.
func openAIVoices() []Voice {
	var vs []Voice
	for _, name := range []string{"marin", "cedar", "alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse"} {
		tags := map[string]any{"multilingual": true}
		if name == "marin" || name == "cedar" {
			tags["recommended"] = true
		}
		vs = append(vs, Voice{ProviderID: ProviderID(ProviderOpenAI), ExternalVoiceID: name,
			Name: strings.ToUpper(name[:1]) + name[1:], Language: "en", Tags: tags, Status: VoiceActive})
	}
	return vs
}

// seedOpenAIVoices adds OpenAI's voices to the catalogue once, also to a store
// seeded before they existed (their ids follow the catalogue's).
func (s *Store) seedOpenAIVoices(ctx context.Context) error {
	first, err := s.rdb.SetNX(ctx, keyVoices()+":seeded:openai", 1, 0).Result()
	if err != nil || !first {
		return wrapRedis(err)
	}
	for _, v := range openAIVoices() {
		if _, err := s.CreateVoice(ctx, v); err != nil {
			return err
		}
	}
	return nil
}

// GetVoice reads a voice, retired or not.
func (s *Store) GetVoice(ctx context.Context, id int64) (*Voice, error) {
	var v Voice
	if err := s.getJSON(ctx, keyVoice(id), &v); err != nil {
		return nil, err
	}
	return &v, nil
}

// ListVoices returns the active catalogue, in id order.
func (s *Store) ListVoices(ctx context.Context) ([]*Voice, error) {
	ids, err := s.rdb.ZRange(ctx, keyVoices(), 0, -1).Result()
	if err != nil {
		return nil, wrapRedis(err)
	}
	keys := make([]string, len(ids))
	for i, id := range ids {
		keys[i] = keyVoice(parseID(id))
	}
	all, err := getJSONs[Voice](ctx, s, keys)
	if err != nil {
		return nil, err
	}
	out := all[:0]
	for _, v := range all {
		if v.Status != VoiceRetired {
			out = append(out, v)
		}
	}
	return out, nil
}

// CreateVoice adds a voice to the catalogue.
func (s *Store) CreateVoice(ctx context.Context, v Voice) (*Voice, error) {
	id, err := s.nextID(ctx, "voice")
	if err != nil {
		return nil, err
	}
	now := s.Now()
	v.ID, v.CreatedAt, v.UpdatedAt = id, now, now
	if v.Status == "" {
		v.Status = VoiceActive
	}
	b, err := marshal(v)
	if err != nil {
		return nil, err
	}
	_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, keyVoice(id), b, 0)
		p.ZAdd(ctx, keyVoices(), redis.Z{Score: float64(id), Member: id})
		return nil
	})
	if err != nil {
		return nil, wrapRedis(err)
	}
	return &v, nil
}

// UpdateVoice changes a voice with fn; an error from fn writes nothing.
func (s *Store) UpdateVoice(ctx context.Context, id int64, fn func(*Voice) error) (*Voice, error) {
	return mutate(ctx, s, keyVoice(id), nil, func(v *Voice, _ redis.Pipeliner) error {
		if v.Status == VoiceRetired {
			return ErrNotFound
		}
		if err := fn(v); err != nil {
			return err
		}
		v.UpdatedAt = s.Now()
		return nil
	})
}

// RetireVoice takes a voice out of the catalogue; agents already using it keep it.
func (s *Store) RetireVoice(ctx context.Context, id int64) error {
	_, err := s.UpdateVoice(ctx, id, func(v *Voice) error { v.Status = VoiceRetired; return nil })
	return err
}
