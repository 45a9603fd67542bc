package store

import (
	"context"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Contact is a caller the company's agents have talked with.
type Contact struct {
	ID                int64      `json:"id"`
	CompanyID         int64      `json:"company_id"`
	PhoneNumber       string     `json:"phone_number"`
	Name              *string    `json:"name"`
	Email             *string    `json:"email"`
	Notes             *string    `json:"notes"`
	Tags              []string   `json:"tags"`
	FirstSeenAt       time.Time  `json:"first_seen_at"`
	LastSeenAt        *time.Time `json:"last_seen_at"`
	ConversationCount int64      `json:"conversation_count"`
	CreatedAt         time.Time  `json:"created_at"`
	UpdatedAt         time.Time  `json:"updated_at"`
}

// ContactPatch lists the fields an update changes; nil fields stay.
type ContactPatch struct {
	Name, Email, Notes *string
	Tags               []string
}

// fillContacts adds the derived fields (count and last seen) from the contact's conversations.
func (s *Store) fillContacts(ctx context.Context, cs []*Contact) error {
	if len(cs) == 0 {
		return nil
	}
	counts := make([]*redis.IntCmd, len(cs))
	lasts := make([]*redis.StringSliceCmd, len(cs))
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, c := range cs {
			counts[i] = p.ZCard(ctx, keyContactConvs(c.CompanyID, c.ID))
			lasts[i] = p.ZRevRange(ctx, keyContactConvs(c.CompanyID, c.ID), 0, 0)
		}
		return nil
	})
	if err != nil {
		return wrapRedis(err)
	}
	keys := make([]string, 0, len(cs))
	for i, c := range cs {
		c.ConversationCount = counts[i].Val()
		if l := lasts[i].Val(); len(l) == 1 {
			keys = append(keys, keyConv(c.CompanyID, parseID(l[0])))
		}
	}
	convs, err := getJSONs[Conversation](ctx, s, keys)
	if err != nil {
		return err
	}
	last := map[int64]time.Time{}
	for _, cv := range convs {
		if cv.ContactID != nil {
			last[*cv.ContactID] = cv.StartedAt
		}
	}
	for _, c := range cs {
		if t, ok := last[c.ID]; ok {
			c.LastSeenAt = &t
		}
	}
	return nil
}

// GetContact reads a contact of the company.
func (s *Store) GetContact(ctx context.Context, cid, id int64) (*Contact, error) {
	var c Contact
	if err := s.getJSON(ctx, keyContact(cid, id), &c); err != nil {
		return nil, err
	}
	if err := s.fillContacts(ctx, []*Contact{&c}); err != nil {
		return nil, err
	}
	return &c, nil
}

// ListContacts pages through contacts, newest first; search keeps those whose number
// contains it (digits only are compared, so "+27 82" finds +2782...). A search with
// no digit in it matches no number.
func (s *Store) ListContacts(ctx context.Context, cid int64, search string, cursor int64, limit int) (Page[Contact], error) {
	var keep func(*Contact) bool
	if d := digits(search); d != "" {
		keep = func(c *Contact) bool { return strings.Contains(digits(c.PhoneNumber), d) }
	} else if strings.TrimSpace(search) != "" {
		return Page[Contact]{}, nil
	}
	page, err := pageRecords(ctx, s, keyContacts(cid), cursor, limit, func(id int64) string { return keyContact(cid, id) }, keep,
		func(c *Contact) int64 { return c.ID })
	if err != nil {
		return page, err
	}
	return page, s.fillContacts(ctx, page.Items)
}

func digits(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r >= '0' && r <= '9' {
			b.WriteRune(r)
		}
	}
	return b.String()
}

// ContactConversations lists a contact's most recent conversations.
func (s *Store) ContactConversations(ctx context.Context, cid, id int64, limit int) ([]*Conversation, error) {
	ids, err := s.rdb.ZRevRange(ctx, keyContactConvs(cid, id), 0, int64(limit-1)).Result()
	if err != nil {
		return nil, wrapRedis(err)
	}
	keys := make([]string, len(ids))
	for i, m := range ids {
		keys[i] = keyConv(cid, parseID(m))
	}
	return getJSONs[Conversation](ctx, s, keys)
}

// UpdateContact changes name, email, notes and tags.
func (s *Store) UpdateContact(ctx context.Context, cid, id int64, p ContactPatch) (*Contact, error) {
	c, err := mutate(ctx, s, keyContact(cid, id), nil, func(c *Contact, _ redis.Pipeliner) error {
		if p.Name != nil {
			c.Name = p.Name
		}
		if p.Email != nil {
			c.Email = p.Email
		}
		if p.Notes != nil {
			c.Notes = p.Notes
		}
		if p.Tags != nil {
			c.Tags = p.Tags
		}
		c.UpdatedAt = s.Now()
		return nil
	})
	if err != nil {
		return nil, err
	}
	return c, s.fillContacts(ctx, []*Contact{c})
}
