package store

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// API key prefixes.
const (
	PrefixAgencyKey  = "cxco_agcy_k_"
	PrefixCompanyKey = "cxco_comp_k_"
	PrefixUserKey    = "cxco_user_k_"
)

// Principal is who an API key speaks for.
type Principal struct {
	Kind      string // "agency", "company" or "user"
	CompanyID int64
	UserID    int64
}

// Agency is the platform operator above the companies.
type Agency struct {
	Name      string         `json:"name"`
	Settings  map[string]any `json:"settings"`
	KeyHash   string         `json:"key_hash"`
	CreatedAt time.Time      `json:"created_at"`
	UpdatedAt time.Time      `json:"updated_at"`
}

// EnsureAgency makes the agency record and its key. With a configured key it makes
// that the agency key (replacing an earlier one). Without one, it generates a key the
// first time and returns it so the caller can print it once; later starts return "".
func (s *Store) EnsureAgency(ctx context.Context, configured string) (generated string, err error) {
	var a Agency
	err = s.getJSON(ctx, keyAgency(), &a)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return "", err
	}
	exists := err == nil
	key := configured
	if key == "" {
		if exists {
			return "", nil
		}
		key = NewAPIKey(PrefixAgencyKey)
		generated = key
	}
	h := HashKey(key)
	if exists && a.KeyHash == h {
		return "", nil
	}
	now := s.Now()
	old := a.KeyHash
	if !exists {
		a = Agency{Name: "CXCo", Settings: map[string]any{}, CreatedAt: now}
	}
	a.KeyHash, a.UpdatedAt = h, now
	b, err := marshal(a)
	if err != nil {
		return "", err
	}
	if err := s.rdb.Set(ctx, keyAPIKey(h), "agency", 0).Err(); err != nil {
		return "", wrapRedis(err)
	}
	if err := s.rdb.Set(ctx, keyAgency(), b, 0).Err(); err != nil {
		return "", wrapRedis(err)
	}
	if old != "" && old != h {
		if err := s.rdb.Del(ctx, keyAPIKey(old)).Err(); err != nil {
			return "", wrapRedis(err)
		}
	}
	return generated, nil
}

// GetAgency reads the agency profile.
func (s *Store) GetAgency(ctx context.Context) (*Agency, error) {
	var a Agency
	if err := s.getJSON(ctx, keyAgency(), &a); err != nil {
		return nil, err
	}
	return &a, nil
}

// UpdateAgency changes the agency's name and/or settings.
func (s *Store) UpdateAgency(ctx context.Context, name *string, settings map[string]any) (*Agency, error) {
	return mutate(ctx, s, keyAgency(), nil, func(a *Agency, _ redis.Pipeliner) error {
		if name != nil {
			a.Name = *name
		}
		if settings != nil {
			a.Settings = settings
		}
		a.UpdatedAt = s.Now()
		return nil
	})
}

// LookupKey finds who an API key belongs to. Unknown keys are ErrNotFound.
func (s *Store) LookupKey(ctx context.Context, key string) (Principal, error) {
	if !strings.HasPrefix(key, PrefixAgencyKey) && !strings.HasPrefix(key, PrefixCompanyKey) && !strings.HasPrefix(key, PrefixUserKey) {
		return Principal{}, ErrNotFound
	}
	v, err := s.rdb.Get(ctx, keyAPIKey(HashKey(key))).Result()
	if errors.Is(err, redis.Nil) {
		return Principal{}, ErrNotFound
	}
	if err != nil {
		return Principal{}, wrapRedis(err)
	}
	return parsePrincipal(v)
}

func parsePrincipal(v string) (Principal, error) {
	parts := strings.Split(v, ":")
	switch {
	case len(parts) == 1 && parts[0] == "agency":
		return Principal{Kind: "agency"}, nil
	case len(parts) == 2 && parts[0] == "company":
		cid, err := strconv.ParseInt(parts[1], 10, 64)
		if err == nil {
			return Principal{Kind: "company", CompanyID: cid}, nil
		}
	case len(parts) == 3 && parts[0] == "user":
		cid, err1 := strconv.ParseInt(parts[1], 10, 64)
		uid, err2 := strconv.ParseInt(parts[2], 10, 64)
		if err1 == nil && err2 == nil {
			return Principal{Kind: "user", CompanyID: cid, UserID: uid}, nil
		}
	}
	return Principal{}, ErrNotFound
}
