package store

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Number statuses in the pool.
const (
	NumberAvailable = "available"
	NumberAssigned  = "assigned"
	NumberEcho      = "echo" // an echo test line: answers with the caller's own audio, never allocated
)

// WhatsApp statuses of a number.
const (
	WhatsAppNone    = "none"
	WhatsAppPending = "pending"
	WhatsAppActive  = "active"
	WhatsAppFailed  = "failed"
)

// PhoneNumber is a number of the pool, with the WhatsApp state of the company it is
// assigned to (kept under that company's hash tag, see keys.go).
type PhoneNumber struct {
	ID           int64  `json:"id"`
	Number       string `json:"number"`
	ProviderSlug string `json:"provider_slug"`
	CountryCode  string `json:"country_code"`
	Status       string `json:"status"`
	CompanyID    *int64 `json:"company_id"`
	AgentID      *int64 `json:"agent_id"`
	// TrunkID is the trunk (carrier) the number belongs to: calls from it
	// go out through that trunk. Nil: the default trunk.
	TrunkID            *int64    `json:"trunk_id"`
	WhatsAppStatus     string    `json:"whatsapp_status"`
	WhatsAppExternalID *string   `json:"whatsapp_external_id"`
	CreatedAt          time.Time `json:"created_at"`
	UpdatedAt          time.Time `json:"updated_at"`
}

// WhatsAppState is the per-company WhatsApp record of an assigned number.
type WhatsAppState struct {
	Status     string    `json:"status"`
	ExternalID *string   `json:"external_id"`
	UpdatedAt  time.Time `json:"updated_at"`
}

var addNumberScript = redis.NewScript(`
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
redis.call('HSET', KEYS[2], 'id', ARGV[2], 'number', ARGV[1], 'country_code', ARGV[3], 'provider_slug', ARGV[4],
  'status', ARGV[5], 'company_id', '', 'agent_id', '', 'created_at', ARGV[6], 'updated_at', ARGV[6])
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[2])
if ARGV[5] == 'available' then redis.call('ZADD', KEYS[4], ARGV[2], ARGV[2]) end
return 1`)

// The pn key is built inside the script from the {pool} prefix; it shares the hash
// slot of KEYS, which Redis Cluster allows.
var allocateScript = redis.NewScript(`
local ids = redis.call('ZRANGE', KEYS[1], 0, 0)
if #ids == 0 then return false end
local id = ids[1]
redis.call('ZREM', KEYS[1], id)
redis.call('HSET', ARGV[1] .. 'pn:' .. id, 'status', 'assigned', 'company_id', ARGV[2], 'agent_id', ARGV[3], 'updated_at', ARGV[4])
redis.call('ZADD', KEYS[2], id, id)
return tonumber(id)`)

var releaseScript = redis.NewScript(`
if redis.call('HGET', KEYS[1], 'agent_id') ~= ARGV[1] then return 0 end
local id = redis.call('HGET', KEYS[1], 'id')
local cc = redis.call('HGET', KEYS[1], 'country_code')
local cid = redis.call('HGET', KEYS[1], 'company_id')
redis.call('HSET', KEYS[1], 'status', 'available', 'company_id', '', 'agent_id', '', 'updated_at', ARGV[2])
redis.call('ZADD', ARGV[3] .. 'avail:' .. cc, id, id)
redis.call('ZREM', ARGV[3] .. 'company:' .. cid, id)
return 1`)

var deleteNumberScript = redis.NewScript(`
local st = redis.call('HGET', KEYS[1], 'status')
if not st then return -1 end
if st == 'assigned' then return 0 end
local num = redis.call('HGET', KEYS[1], 'number')
local cc = redis.call('HGET', KEYS[1], 'country_code')
redis.call('DEL', KEYS[1])
redis.call('HDEL', KEYS[2], num)
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('ZREM', ARGV[2] .. 'avail:' .. cc, ARGV[1])
return 1`)

var echoScript = redis.NewScript(`
local st = redis.call('HGET', KEYS[1], 'status')
if not st then return -1 end
if st == 'assigned' then return 0 end
local cc = redis.call('HGET', KEYS[1], 'country_code')
if ARGV[1] == '1' then
  redis.call('HSET', KEYS[1], 'status', 'echo', 'updated_at', ARGV[2])
  redis.call('ZREM', ARGV[3] .. 'avail:' .. cc, ARGV[4])
else
  redis.call('HSET', KEYS[1], 'status', 'available', 'updated_at', ARGV[2])
  redis.call('ZADD', ARGV[3] .. 'avail:' .. cc, ARGV[4], ARGV[4])
end
return 1`)

func ts(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// AddNumber puts a number into the pool (or makes it an echo line).
func (s *Store) AddNumber(ctx context.Context, number, country, providerSlug string, echo bool) (*PhoneNumber, error) {
	id, err := s.nextID(ctx, "phone_number")
	if err != nil {
		return nil, err
	}
	status := NumberAvailable
	if echo {
		status = NumberEcho
	}
	ok, err := addNumberScript.Run(ctx, s.rdb, []string{keyPNByNum(), keyPN(id), keyPNs(), keyPNAvail(country)},
		number, id, country, providerSlug, status, ts(s.Now())).Int()
	if err != nil {
		return nil, wrapRedis(err)
	}
	if ok == 0 {
		return nil, conflict("phone number " + number + " is already in the pool")
	}
	return s.GetNumber(ctx, id)
}

func parsePN(m map[string]string) *PhoneNumber {
	pn := &PhoneNumber{ID: parseID(m["id"]), Number: m["number"], ProviderSlug: m["provider_slug"],
		CountryCode: m["country_code"], Status: m["status"], WhatsAppStatus: WhatsAppNone}
	if v := parseID(m["company_id"]); v > 0 {
		pn.CompanyID = &v
	}
	if v := parseID(m["agent_id"]); v > 0 {
		pn.AgentID = &v
	}
	if v := parseID(m["trunk_id"]); v > 0 {
		pn.TrunkID = &v
	}
	pn.CreatedAt, _ = time.Parse(time.RFC3339, m["created_at"])
	pn.UpdatedAt, _ = time.Parse(time.RFC3339, m["updated_at"])
	return pn
}

// GetNumber reads a pool number (without WhatsApp state).
func (s *Store) GetNumber(ctx context.Context, id int64) (*PhoneNumber, error) {
	m, err := s.rdb.HGetAll(ctx, keyPN(id)).Result()
	if err != nil {
		return nil, wrapRedis(err)
	}
	if len(m) == 0 {
		return nil, ErrNotFound
	}
	return parsePN(m), nil
}

// GetNumberByE164 finds a pool number by its E.164 form (with the +).
func (s *Store) GetNumberByE164(ctx context.Context, number string) (*PhoneNumber, error) {
	id, err := s.rdb.HGet(ctx, keyPNByNum(), number).Result()
	if errors.Is(err, redis.Nil) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, wrapRedis(err)
	}
	return s.GetNumber(ctx, parseID(id))
}

// getNumbers reads many pool numbers with one pipeline.
func (s *Store) getNumbers(ctx context.Context, ids []int64) ([]*PhoneNumber, error) {
	cmds, err := pipelined(ctx, s, len(ids), func(p redis.Pipeliner, i int) *redis.MapStringStringCmd {
		return p.HGetAll(ctx, keyPN(ids[i]))
	})
	if err != nil {
		return nil, err
	}
	out := make([]*PhoneNumber, 0, len(ids))
	for _, c := range cmds {
		if m := c.Val(); len(m) > 0 {
			out = append(out, parsePN(m))
		}
	}
	return out, nil
}

// ListPool pages through the whole pool, newest first, optionally filtered.
func (s *Store) ListPool(ctx context.Context, status, country string, cursor int64, limit int) (Page[PhoneNumber], error) {
	load := func(ids []int64) ([]*PhoneNumber, error) { return s.getNumbers(ctx, ids) }
	keep := func(pn *PhoneNumber) bool {
		return (status == "" || pn.Status == status) && (country == "" || pn.CountryCode == country)
	}
	page, err := pageLoaded(ctx, s, keyPNs(), cursor, limit, 100, load, keep, func(pn *PhoneNumber) int64 { return pn.ID })
	if err != nil {
		return page, err
	}
	// An assigned number's WhatsApp state lives with its company.
	byCompany := map[int64][]*PhoneNumber{}
	for _, pn := range page.Items {
		if pn.CompanyID != nil {
			byCompany[*pn.CompanyID] = append(byCompany[*pn.CompanyID], pn)
		}
	}
	for cid, pns := range byCompany {
		if _, err := s.withWhatsApp(ctx, cid, pns); err != nil {
			return page, err
		}
	}
	return page, nil
}

// AvailableNumbers lists up to limit available numbers, lowest id first (the order
// publishing takes them in). An empty country means every country.
func (s *Store) AvailableNumbers(ctx context.Context, country string, limit int) ([]*PhoneNumber, error) {
	if country != "" {
		res, err := s.rdb.ZRange(ctx, keyPNAvail(country), 0, int64(limit-1)).Result()
		if err != nil {
			return nil, wrapRedis(err)
		}
		return s.getNumbers(ctx, idsOf(res))
	}
	var out []*PhoneNumber
	var start int64
	for len(out) < limit {
		res, err := s.rdb.ZRange(ctx, keyPNs(), start, start+199).Result()
		if err != nil {
			return nil, wrapRedis(err)
		}
		if len(res) == 0 {
			break
		}
		start += int64(len(res))
		pns, err := s.getNumbers(ctx, idsOf(res))
		if err != nil {
			return nil, err
		}
		for _, pn := range pns {
			if pn.Status == NumberAvailable && len(out) < limit {
				out = append(out, pn)
			}
		}
	}
	return out, nil
}

func idsOf(members []string) []int64 {
	ids := make([]int64, len(members))
	for i, m := range members {
		ids[i] = parseID(m)
	}
	return ids
}

// CompanyNumbers lists the numbers assigned to a company, with their WhatsApp state.
func (s *Store) CompanyNumbers(ctx context.Context, cid int64) ([]*PhoneNumber, error) {
	res, err := s.rdb.ZRange(ctx, keyPNCompany(cid), 0, -1).Result()
	if err != nil {
		return nil, wrapRedis(err)
	}
	pns, err := s.getNumbers(ctx, idsOf(res))
	if err != nil {
		return nil, err
	}
	return s.withWhatsApp(ctx, cid, pns)
}

// CompanyNumber reads one number assigned to the company; any other is ErrNotFound.
func (s *Store) CompanyNumber(ctx context.Context, cid, id int64) (*PhoneNumber, error) {
	pn, err := s.GetNumber(ctx, id)
	if err != nil {
		return nil, err
	}
	if pn.CompanyID == nil || *pn.CompanyID != cid {
		return nil, ErrNotFound
	}
	out, err := s.withWhatsApp(ctx, cid, []*PhoneNumber{pn})
	if err != nil {
		return nil, err
	}
	return out[0], nil
}

func (s *Store) withWhatsApp(ctx context.Context, cid int64, pns []*PhoneNumber) ([]*PhoneNumber, error) {
	cmds, err := pipelined(ctx, s, len(pns), func(p redis.Pipeliner, i int) *redis.StringCmd {
		return p.Get(ctx, keyPNWA(cid, pns[i].ID))
	})
	if err != nil {
		return nil, err
	}
	for i, c := range cmds {
		var wa WhatsAppState
		if b, err := c.Bytes(); err == nil && json.Unmarshal(b, &wa) == nil {
			pns[i].WhatsAppStatus, pns[i].WhatsAppExternalID = wa.Status, wa.ExternalID
		}
	}
	return pns, nil
}

// allocateNumber takes the lowest available number of a country for an agent, atomically.
func (s *Store) allocateNumber(ctx context.Context, country string, cid, aid int64) (int64, error) {
	id, err := allocateScript.Run(ctx, s.rdb, []string{keyPNAvail(country), keyPNCompany(cid)},
		pool, cid, aid, ts(s.Now())).Int64()
	if errors.Is(err, redis.Nil) {
		return 0, ErrNoNumber
	}
	return id, wrapRedis(err)
}

// releaseNumber returns a number to the pool if it is still assigned to the agent.
func (s *Store) releaseNumber(ctx context.Context, pnid, aid int64) error {
	return wrapRedis(releaseScript.Run(ctx, s.rdb, []string{keyPN(pnid)}, strconv.FormatInt(aid, 10), ts(s.Now()), pool).Err())
}

// DeleteNumber removes a number that is not assigned.
func (s *Store) DeleteNumber(ctx context.Context, id int64) error {
	r, err := deleteNumberScript.Run(ctx, s.rdb, []string{keyPN(id), keyPNByNum(), keyPNs()}, id, pool).Int()
	switch {
	case err != nil:
		return wrapRedis(err)
	case r < 0:
		return ErrNotFound
	case r == 0:
		return conflict("phone number is assigned to an agent; archive the agent first")
	}
	return nil
}

// SetNumberTrunk says which trunk a pool number belongs to (0: none, the
// default trunk). The trunk must exist.
func (s *Store) SetNumberTrunk(ctx context.Context, id, trunkID int64) (*PhoneNumber, error) {
	if trunkID != 0 {
		if _, err := s.GetTrunk(ctx, trunkID); err != nil {
			return nil, err
		}
	}
	n, err := s.rdb.Exists(ctx, keyPN(id)).Result()
	if err != nil {
		return nil, wrapRedis(err)
	}
	if n == 0 {
		return nil, ErrNotFound
	}
	if trunkID == 0 {
		err = s.rdb.HDel(ctx, keyPN(id), "trunk_id").Err()
	} else {
		err = s.rdb.HSet(ctx, keyPN(id), "trunk_id", trunkID, "updated_at", ts(s.Now())).Err()
	}
	if err != nil {
		return nil, wrapRedis(err)
	}
	return s.GetNumber(ctx, id)
}

// SetEchoLine makes a number that is not assigned an echo test line, or a normal pool number again.
func (s *Store) SetEchoLine(ctx context.Context, id int64, echo bool) (*PhoneNumber, error) {
	flag := "0"
	if echo {
		flag = "1"
	}
	r, err := echoScript.Run(ctx, s.rdb, []string{keyPN(id)}, flag, ts(s.Now()), pool, id).Int()
	switch {
	case err != nil:
		return nil, wrapRedis(err)
	case r < 0:
		return nil, ErrNotFound
	case r == 0:
		return nil, conflict("phone number is assigned to an agent")
	}
	return s.GetNumber(ctx, id)
}
