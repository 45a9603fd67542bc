package store

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// The roles a user can have, from the most rights to the fewest. The API
// reference names owner, admin and member (the default); viewer is read-only.
// What each may do is decided per route by package control.
const (
	RoleOwner  = "owner"
	RoleAdmin  = "admin"
	RoleMember = "member"
	RoleViewer = "viewer"
)

// Roles lists every role, most rights first.
var Roles = []string{RoleOwner, RoleAdmin, RoleMember, RoleViewer}

// User belongs to a company and has its own key.
type User struct {
	ID        int64     `json:"id"`
	CompanyID int64     `json:"company_id"`
	Email     string    `json:"email"`
	Name      string    `json:"name"`
	Role      string    `json:"role"`
	Status    string    `json:"status"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
	KeyHash   string    `json:"key_hash"`
}

// CreateUser adds a user and returns its key, shown once. A second user with the same
// email (case-insensitive) in the company is a conflict.
func (s *Store) CreateUser(ctx context.Context, cid int64, email, name, role string) (*User, string, error) {
	id, err := s.nextID(ctx, "user")
	if err != nil {
		return nil, "", err
	}
	now := s.Now()
	key := NewAPIKey(PrefixUserKey)
	u := &User{ID: id, CompanyID: cid, Email: email, Name: name, Role: role, Status: "active",
		CreatedAt: now, UpdatedAt: now, KeyHash: HashKey(key)}
	lower := strings.ToLower(email)
	b, err := marshal(u)
	if err != nil {
		return nil, "", err
	}
	for attempt := 0; ; attempt++ {
		err = s.rdb.Watch(ctx, func(tx *redis.Tx) error {
			taken, err := tx.HExists(ctx, keyUserEmails(cid), lower).Result()
			if err != nil {
				return err
			}
			if taken {
				return conflict("a user with email " + email + " already exists in the company")
			}
			_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
				p.HSet(ctx, keyUserEmails(cid), lower, id)
				p.Set(ctx, keyUser(cid, id), b, 0)
				p.ZAdd(ctx, keyUsers(cid), redis.Z{Score: float64(id), Member: id})
				return nil
			})
			return err
		}, keyUserEmails(cid))
		if errors.Is(err, redis.TxFailedErr) && attempt < 50 {
			backoff(ctx, attempt)
			continue
		}
		break
	}
	if err != nil {
		return nil, "", wrapRedis(err)
	}
	if err := s.rdb.Set(ctx, keyAPIKey(u.KeyHash), "user:"+itoa(cid)+":"+itoa(id), 0).Err(); err != nil {
		return nil, "", wrapRedis(err)
	}
	return u, key, nil
}

// GetUser reads a user of the company.
func (s *Store) GetUser(ctx context.Context, cid, uid int64) (*User, error) {
	var u User
	if err := s.getJSON(ctx, keyUser(cid, uid), &u); err != nil {
		return nil, err
	}
	return &u, nil
}

// ListUsers pages through a company's users, newest first.
func (s *Store) ListUsers(ctx context.Context, cid, cursor int64, limit int) (Page[User], error) {
	return pageRecords[User](ctx, s, keyUsers(cid), cursor, limit, func(id int64) string { return keyUser(cid, id) }, nil, func(u *User) int64 { return u.ID })
}

// UpdateUser changes name and/or role.
func (s *Store) UpdateUser(ctx context.Context, cid, uid int64, name, role *string) (*User, error) {
	return mutate(ctx, s, keyUser(cid, uid), nil, func(u *User, _ redis.Pipeliner) error {
		if name != nil {
			u.Name = *name
		}
		if role != nil {
			u.Role = *role
		}
		u.UpdatedAt = s.Now()
		return nil
	})
}

// DeleteUser removes a user and revokes its key at once.
func (s *Store) DeleteUser(ctx context.Context, cid, uid int64) error {
	u, err := s.GetUser(ctx, cid, uid)
	if err != nil {
		return err
	}
	if err := s.rdb.Del(ctx, keyAPIKey(u.KeyHash)).Err(); err != nil {
		return wrapRedis(err)
	}
	_, err = s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Del(ctx, keyUser(cid, uid))
		p.HDel(ctx, keyUserEmails(cid), strings.ToLower(u.Email))
		p.ZRem(ctx, keyUsers(cid), uid)
		return nil
	})
	return wrapRedis(err)
}
