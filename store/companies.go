package store

import (
	"context"
	"time"

	"github.com/redis/go-redis/v9"
)

// Company plans and their API rate limits (requests per minute).
const (
	PlanStarter    = "starter"
	PlanGrowth     = "growth"
	PlanEnterprise = "enterprise"

	CompanyActive    = "active"
	CompanySuspended = "suspended"

	// DefaultEnterpriseRateLimit applies to an enterprise company without its own figure.
	DefaultEnterpriseRateLimit = 10000
)

// Company is a tenant.
type Company struct {
	ID                 int64          `json:"id"`
	Name               string         `json:"name"`
	Status             string         `json:"status"`
	Plan               string         `json:"plan"`
	RateLimitPerMinute *int           `json:"rate_limit_per_minute"`
	MetaBusinessID     *string        `json:"meta_business_id"`
	Settings           map[string]any `json:"settings"`
	// Outbound are the company's outbound call limits as the agency set them
	// (nil: DefaultOutboundLimits).
	Outbound  *OutboundLimits `json:"outbound_limits,omitempty"`
	CreatedAt time.Time       `json:"created_at"`
	UpdatedAt time.Time       `json:"updated_at"`
	KeyHash   string          `json:"key_hash"`
}

// RateLimit is the company's API requests per minute.
func (c *Company) RateLimit() int {
	switch c.Plan {
	case PlanGrowth:
		return 1000
	case PlanEnterprise:
		if c.RateLimitPerMinute != nil && *c.RateLimitPerMinute > 0 {
			return *c.RateLimitPerMinute
		}
		return DefaultEnterpriseRateLimit
	default:
		return 100
	}
}

// DefaultOutboundLimits are a company's outbound limits until the agency sets
// them: 10 calls at once, 2 new calls a second.
var DefaultOutboundLimits = OutboundLimits{MaxConcurrent: 10, CallsPerSecond: 2}

// OutboundLimits is the company's outbound limits in force.
func (c *Company) OutboundLimits() OutboundLimits {
	if c.Outbound != nil {
		return *c.Outbound
	}
	return DefaultOutboundLimits
}

// CompanyPatch lists the fields an update changes; nil fields stay.
type CompanyPatch struct {
	Name               *string
	Settings           map[string]any
	Status             *string
	Plan               *string
	RateLimitPerMinute *int
	MetaBusinessID     *string
	Outbound           *OutboundLimits
}

// CreateCompany makes a company and its first API key, returned once.
func (s *Store) CreateCompany(ctx context.Context, name, plan string, settings map[string]any, rateLimit *int) (*Company, string, error) {
	id, err := s.nextID(ctx, "company")
	if err != nil {
		return nil, "", err
	}
	if plan == "" {
		plan = PlanStarter
	}
	if settings == nil {
		settings = map[string]any{}
	}
	now := s.Now()
	key := NewAPIKey(PrefixCompanyKey)
	c := &Company{ID: id, Name: name, Status: CompanyActive, Plan: plan, RateLimitPerMinute: rateLimit,
		Settings: settings, CreatedAt: now, UpdatedAt: now, KeyHash: HashKey(key)}
	// The record first, then its indexes and the key: a key never points at nothing.
	b, err := marshal(c)
	if err != nil {
		return nil, "", err
	}
	if err := s.rdb.Set(ctx, keyCompany(id), b, 0).Err(); err != nil {
		return nil, "", wrapRedis(err)
	}
	_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.ZAdd(ctx, keyCompanies(), redis.Z{Score: float64(id), Member: id})
		p.SAdd(ctx, keyOutboxCompanies(), id)
		p.Set(ctx, keyAPIKey(c.KeyHash), "company:"+itoa(id), 0)
		return nil
	})
	if err != nil {
		return nil, "", wrapRedis(err)
	}
	return c, key, nil
}

// GetCompany reads a company.
func (s *Store) GetCompany(ctx context.Context, id int64) (*Company, error) {
	var c Company
	if err := s.getJSON(ctx, keyCompany(id), &c); err != nil {
		return nil, err
	}
	return &c, nil
}

// ListCompanies pages through every company, newest first.
func (s *Store) ListCompanies(ctx context.Context, cursor int64, limit int) (Page[Company], error) {
	return pageRecords[Company](ctx, s, keyCompanies(), cursor, limit, keyCompany, nil, func(c *Company) int64 { return c.ID })
}

// CompanyIDs lists every company id (for background workers).
func (s *Store) CompanyIDs(ctx context.Context) ([]int64, error) {
	res, err := s.rdb.ZRange(ctx, keyCompanies(), 0, -1).Result()
	if err != nil {
		return nil, wrapRedis(err)
	}
	ids := make([]int64, 0, len(res))
	for _, m := range res {
		ids = append(ids, parseID(m))
	}
	return ids, nil
}

// UpdateCompany applies a patch.
func (s *Store) UpdateCompany(ctx context.Context, id int64, p CompanyPatch) (*Company, error) {
	return mutate(ctx, s, keyCompany(id), nil, func(c *Company, _ redis.Pipeliner) error {
		if p.Name != nil {
			c.Name = *p.Name
		}
		if p.Settings != nil {
			c.Settings = p.Settings
		}
		if p.Status != nil {
			c.Status = *p.Status
		}
		if p.Plan != nil {
			c.Plan = *p.Plan
		}
		if p.RateLimitPerMinute != nil {
			c.RateLimitPerMinute = p.RateLimitPerMinute
		}
		if p.MetaBusinessID != nil {
			c.MetaBusinessID = p.MetaBusinessID
		}
		if p.Outbound != nil {
			c.Outbound = p.Outbound
		}
		c.UpdatedAt = s.Now()
		return nil
	})
}

// RotateCompanyKey issues a new company key; the old one stops working before this returns.
func (s *Store) RotateCompanyKey(ctx context.Context, id int64) (*Company, string, error) {
	if _, err := s.GetCompany(ctx, id); err != nil {
		return nil, "", err
	}
	key := NewAPIKey(PrefixCompanyKey)
	h := HashKey(key)
	if err := s.rdb.Set(ctx, keyAPIKey(h), "company:"+itoa(id), 0).Err(); err != nil {
		return nil, "", wrapRedis(err)
	}
	var old string
	c, err := mutate(ctx, s, keyCompany(id), nil, func(c *Company, _ redis.Pipeliner) error {
		old = c.KeyHash
		c.KeyHash, c.UpdatedAt = h, s.Now()
		return nil
	})
	if err != nil {
		s.rdb.Del(ctx, keyAPIKey(h))
		return nil, "", err
	}
	if old != "" && old != h {
		if err := s.rdb.Del(ctx, keyAPIKey(old)).Err(); err != nil {
			return nil, "", wrapRedis(err)
		}
	}
	return c, key, nil
}

func parseID(s string) int64 {
	var n int64
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0
		}
		n = n*10 + int64(c-'0')
	}
	return n
}
