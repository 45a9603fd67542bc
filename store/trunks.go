package store

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// A Trunk is one carrier connection: who may send us calls, how we authenticate to
// each other, how its media is encrypted and encoded, how its numbers are written,
// and whether we register to it. Several trunks can feed one gateway. The flags of
// `cxco serve` make the default trunk (ID 0, never stored); the agency adds more
// with the API.
type Trunk struct {
	ID   int64  `json:"id"`
	Name string `json:"name"`
	// Allow lists the networks (CIDRs) that may send this trunk's requests.
	Allow []string `json:"allow"`
	// URI is where we send requests for this trunk: bridged transfers, REFER
	// targets given as numbers, and REGISTER when Registration has no registrars.
	// sip:host[:port][;transport=udp|tcp|tls] or sips:host[:port].
	URI string `json:"uri,omitempty"`
	// Username is the digest user we authenticate with towards the trunk (REGISTER,
	// outbound INVITEs) and, when InboundAuth is set, the one its INVITEs must
	// carry. The password is sealed (PasswordSealed) and never read back.
	Username       string `json:"username,omitempty"`
	PasswordSealed string `json:"password_sealed,omitempty"`
	// InboundAuth: INVITEs from this trunk must carry digest credentials for
	// Username (401 challenge otherwise).
	InboundAuth bool `json:"inbound_auth,omitempty"`

	TLS          TrunkTLS          `json:"tls"`
	SRTP         string            `json:"srtp"`   // SRTPDisabled, SRTPOptional or SRTPRequired
	Codecs       []string          `json:"codecs"` // preference order: PCMU, PCMA, G722, opus
	NAT          TrunkNAT          `json:"nat"`
	Numbers      NumberRule        `json:"numbers"`
	Registration TrunkRegistration `json:"registration"`

	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// SRTP policies of a trunk.
const (
	SRTPDisabled = "disabled" // plain RTP only; an SRTP offer is answered without crypto or refused
	SRTPOptional = "optional" // SRTP when the peer offers it (SDES), plain RTP otherwise
	SRTPRequired = "required" // a plaintext offer gets 488
)

// Codec names a trunk can list, in the spelling SDP uses.
var TrunkCodecs = []string{"PCMU", "PCMA", "G722", "opus"}

// DefaultCodecs is the codec order of a trunk that names none.
var DefaultCodecs = []string{"PCMU", "PCMA"}

// NAT latching policies of a trunk (where RTP is accepted from).
const (
	// LatchDefault leaves it to the gateway's default.
	LatchDefault = ""
	// LatchOff accepts media only from the address the SDP names.
	LatchOff = "off"
	// LatchSource also accepts media from the signalling source's address (a trunk
	// behind NAT whose SDP names a private address).
	LatchSource = "signalling_source"
)

// TrunkTLS is how we speak TLS to a trunk.
type TrunkTLS struct {
	// ClientCertFile and ClientKeyFile are the PEM certificate and key we present
	// to a trunk that asks for one (mutual TLS). Reloaded with the server
	// certificate on SIGHUP.
	ClientCertFile string `json:"client_cert_file,omitempty"`
	ClientKeyFile  string `json:"client_key_file,omitempty"`
}

// TrunkNAT is how media from a trunk behind NAT is handled.
type TrunkNAT struct {
	Latching string `json:"latching"` // LatchDefault, LatchOff or LatchSource
}

// NumberRule turns the numbers a trunk sends into E.164 before routing. With a
// Country, a number that starts with the national prefix ("0211234567" in ZA) is
// national, one that starts with the international prefix ("0027...") is
// international; otherwise the digits are taken as E.164 without the "+".
type NumberRule struct {
	Country string `json:"country,omitempty"` // ISO 3166-1 alpha-2; empty: numbers are E.164 (the + optional)
	// NationalPrefix and InternationalPrefix override the country's ("0" and "00"
	// in most countries; nil: the country's).
	NationalPrefix      *string `json:"national_prefix,omitempty"`
	InternationalPrefix *string `json:"international_prefix,omitempty"`
}

// TrunkRegistration is our registration to the trunk's registrar (for carriers that
// send calls only to a registered contact).
type TrunkRegistration struct {
	Enabled bool `json:"enabled"`
	// Registrars are tried in order: the first is the primary, the others take over
	// when it fails. Empty: the trunk's URI. Same form as URI.
	Registrars []string `json:"registrars,omitempty"`
	// AOR user (default: Username), and the expiry we ask for (default 600 s).
	User    string `json:"user,omitempty"`
	Expires int    `json:"expires,omitempty"`
}

// HasPassword reports whether a password is stored.
func (t *Trunk) HasPassword() bool { return t.PasswordSealed != "" }

// CodecList is the trunk's codecs in preference order, DefaultCodecs when none.
func (t *Trunk) CodecList() []string {
	if len(t.Codecs) == 0 {
		return DefaultCodecs
	}
	return t.Codecs
}

// SRTPPolicy is the trunk's SRTP policy, SRTPDisabled when unset.
func (t *Trunk) SRTPPolicy() string {
	if t.SRTP == "" {
		return SRTPDisabled
	}
	return t.SRTP
}

// Prefixes parses Allow (Validate has checked it).
func (t *Trunk) Prefixes() []netip.Prefix {
	var out []netip.Prefix
	for _, s := range t.Allow {
		if p, err := ParseCIDR(s); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// ParseCIDR reads "10.0.0.0/8" or a single address ("192.0.2.7": a /32).
func ParseCIDR(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	p, err := netip.ParsePrefix(s)
	if err != nil {
		a, err2 := netip.ParseAddr(s)
		if err2 != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not a CIDR or an IP address", s)
		}
		p = netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen())
	}
	return p.Masked(), nil
}

// Registrars is where we register: Registration.Registrars, else the URI.
func (t *Trunk) Registrars() []string {
	if len(t.Registration.Registrars) > 0 {
		return t.Registration.Registrars
	}
	if t.URI != "" {
		return []string{t.URI}
	}
	return nil
}

// RegisterExpiry is the expiry we ask the registrar for.
func (t *Trunk) RegisterExpiry() time.Duration {
	if t.Registration.Expires <= 0 {
		return 600 * time.Second
	}
	return time.Duration(t.Registration.Expires) * time.Second
}

// RegisterUser is the user of the address-of-record we register.
func (t *Trunk) RegisterUser() string {
	if t.Registration.User != "" {
		return t.Registration.User
	}
	return t.Username
}

// ErrInvalid: a value does not fit the model (control answers 422 with its text).
var ErrInvalid = errors.New("invalid")

// InvalidError is an ErrInvalid with a human-readable detail.
type InvalidError struct{ Detail string }

func (e *InvalidError) Error() string { return e.Detail }

// Unwrap makes errors.Is(err, ErrInvalid) true.
func (e *InvalidError) Unwrap() error { return ErrInvalid }

// Validate checks a trunk; errors name the field (JSON names).
func (t *Trunk) Validate() error {
	var errs []string
	bad := func(format string, a ...any) { errs = append(errs, fmt.Sprintf(format, a...)) }
	if t.Name = strings.TrimSpace(t.Name); t.Name == "" || len(t.Name) > 100 {
		bad("name: 1 to 100 characters")
	}
	for _, s := range t.Allow {
		if _, err := ParseCIDR(s); err != nil {
			bad("allow: %v", err)
		}
	}
	if t.URI != "" {
		if _, err := ParseTrunkURI(t.URI); err != nil {
			bad("uri: %v", err)
		}
	}
	switch t.SRTP {
	case "", SRTPDisabled, SRTPOptional, SRTPRequired:
	default:
		bad("srtp: %q is not one of disabled, optional, required", t.SRTP)
	}
	seen := map[string]bool{}
	for i, c := range t.Codecs {
		j := slices.IndexFunc(TrunkCodecs, func(k string) bool { return strings.EqualFold(k, c) })
		if j < 0 {
			bad("codecs: %q is not one of %s", c, strings.Join(TrunkCodecs, ", "))
			continue
		}
		t.Codecs[i] = TrunkCodecs[j]
		if seen[t.Codecs[i]] {
			bad("codecs: %s is listed twice", t.Codecs[i])
		}
		seen[t.Codecs[i]] = true
	}
	switch t.NAT.Latching {
	case LatchDefault, LatchOff, LatchSource:
	default:
		bad("nat.latching: %q is not one of off, signalling_source", t.NAT.Latching)
	}
	if c := t.Numbers.Country; c != "" {
		t.Numbers.Country = strings.ToUpper(c)
		if CallingCode(c) == "" {
			bad("numbers.country: %q is not an ISO 3166-1 alpha-2 country code", c)
		}
	}
	for name, p := range map[string]*string{"numbers.national_prefix": t.Numbers.NationalPrefix, "numbers.international_prefix": t.Numbers.InternationalPrefix} {
		if p != nil && (len(*p) > 4 || strings.Trim(*p, "0123456789") != "") {
			bad("%s: %q is not up to 4 digits", name, *p)
		}
	}
	if (t.Numbers.NationalPrefix != nil || t.Numbers.InternationalPrefix != nil) && t.Numbers.Country == "" {
		bad("numbers: national_prefix and international_prefix need a country")
	}
	if (t.TLS.ClientCertFile == "") != (t.TLS.ClientKeyFile == "") {
		bad("tls: client_cert_file and client_key_file go together")
	}
	if t.InboundAuth && t.Username == "" {
		bad("inbound_auth needs a username and password")
	}
	if r := t.Registration; r.Enabled {
		if len(t.Registrars()) == 0 {
			bad("registration: needs registrars or the trunk's uri")
		}
		if t.RegisterUser() == "" {
			bad("registration: needs a user (registration.user or username)")
		}
	}
	for _, r := range t.Registration.Registrars {
		if _, err := ParseTrunkURI(r); err != nil {
			bad("registration.registrars: %v", err)
		}
	}
	if e := t.Registration.Expires; e != 0 && (e < 60 || e > 86400) {
		bad("registration.expires: %d is not between 60 and 86400 seconds", e)
	}
	if len(errs) > 0 {
		return &InvalidError{Detail: strings.Join(errs, "; ")}
	}
	return nil
}

// TrunkURI is a parsed trunk URI.
type TrunkURI struct {
	Host      string // name or address, without brackets
	Port      int    // 0: the transport's default
	Transport string // udp, tcp or tls
}

// HostPort is host:port, with the transport's default port when none is given.
func (u TrunkURI) HostPort() string {
	port := u.Port
	if port == 0 {
		port = 5060
		if u.Transport == "tls" {
			port = 5061
		}
	}
	return netJoin(u.Host, port)
}

func netJoin(host string, port int) string {
	if strings.Contains(host, ":") {
		return "[" + host + "]:" + strconv.Itoa(port)
	}
	return host + ":" + strconv.Itoa(port)
}

// ParseTrunkURI reads sip:host[:port][;transport=x] or sips:host[:port] (a user
// part is allowed and ignored).
func ParseTrunkURI(s string) (TrunkURI, error) {
	var u TrunkURI
	scheme, rest, ok := strings.Cut(strings.TrimSpace(s), ":")
	scheme = strings.ToLower(scheme)
	if !ok || (scheme != "sip" && scheme != "sips") {
		return u, fmt.Errorf("%q is not a sip: or sips: URI", s)
	}
	hostport, params, _ := strings.Cut(rest, ";")
	if _, after, found := strings.Cut(hostport, "@"); found {
		hostport = after
	}
	u.Transport = "udp"
	if scheme == "sips" {
		u.Transport = "tls"
	}
	for _, p := range strings.Split(params, ";") {
		k, v, _ := strings.Cut(p, "=")
		if strings.EqualFold(strings.TrimSpace(k), "transport") {
			v = strings.ToLower(strings.TrimSpace(v))
			switch {
			case v != "udp" && v != "tcp" && v != "tls":
				return u, fmt.Errorf("%q: transport %q is not udp, tcp or tls", s, v)
			case scheme == "sips" && v != "tls":
				return u, fmt.Errorf("%q: a sips: URI is reached over TLS only", s)
			}
			u.Transport = v
		}
	}
	pu, err := url.Parse("//" + hostport)
	if err != nil || pu.Hostname() == "" {
		return u, fmt.Errorf("%q has no host", s)
	}
	u.Host = pu.Hostname()
	if p := pu.Port(); p != "" {
		if u.Port, err = strconv.Atoi(p); err != nil || u.Port < 1 || u.Port > 65535 {
			return u, fmt.Errorf("%q: bad port", s)
		}
	}
	return u, nil
}

// Normalize turns a dialled string into E.164 under rule: "+" numbers as they
// are, the international prefix replaced by "+", the national prefix by the
// country's code, other digits taken as E.164 without the "+". Visual separators
// and URI parameters are ignored; "" when there are no digits.
func (r NumberRule) Normalize(s string) string {
	s, _, _ = strings.Cut(s, ";")
	s = strings.TrimSpace(s)
	plus := strings.HasPrefix(s, "+")
	var b strings.Builder
	for _, c := range s {
		if c >= '0' && c <= '9' {
			b.WriteRune(c)
		}
	}
	digits := b.String()
	if digits == "" {
		return ""
	}
	if plus || r.Country == "" {
		return "+" + digits
	}
	intl, natl := InternationalPrefix(r.Country), NationalPrefix(r.Country)
	if r.InternationalPrefix != nil {
		intl = *r.InternationalPrefix
	}
	if r.NationalPrefix != nil {
		natl = *r.NationalPrefix
	}
	switch {
	case intl != "" && strings.HasPrefix(digits, intl) && len(digits) > len(intl):
		return "+" + digits[len(intl):]
	case natl != "" && strings.HasPrefix(digits, natl) && len(digits) > len(natl):
		return "+" + CallingCode(r.Country) + digits[len(natl):]
	}
	return "+" + digits
}

// The trunks live under one hash tag, {trunks}, so a change and its version bump
// are one transaction.
const trunksPrefix = prefix + "{trunks}:"

func keyTrunks() string            { return trunksPrefix + "ids" }
func keyTrunk(id int64) string     { return trunksPrefix + "trunk:" + itoa(id) }
func keyTrunkNames() string        { return trunksPrefix + "byname" }
func keyTrunksVersion() string     { return trunksPrefix + "version" }
func trunkAD(id int64) string      { return "trunk:" + itoa(id) }
func trunkNameKey(n string) string { return strings.ToLower(n) }

// SealTrunkPassword seals a trunk's password (empty: none stored). The trunk must
// have its ID.
func (s *Store) SealTrunkPassword(t *Trunk, password string) {
	if password == "" {
		t.PasswordSealed = ""
		return
	}
	t.PasswordSealed = s.sealer.Seal([]byte(password), trunkAD(t.ID))
}

// TrunkPassword opens a trunk's password ("" when none is stored).
func (s *Store) TrunkPassword(t *Trunk) (string, error) {
	if t.PasswordSealed == "" {
		return "", nil
	}
	b, err := s.sealer.Open(t.PasswordSealed, trunkAD(t.ID))
	return string(b), err
}

// CreateTrunk stores a new trunk (validated) with its password sealed; a second
// trunk of the same name is a conflict.
func (s *Store) CreateTrunk(ctx context.Context, t Trunk, password string) (*Trunk, error) {
	if err := t.Validate(); err != nil {
		return nil, err
	}
	id, err := s.nextID(ctx, "trunk")
	if err != nil {
		return nil, err
	}
	now := s.Now()
	t.ID, t.CreatedAt, t.UpdatedAt = id, now, now
	s.SealTrunkPassword(&t, password)
	set, err := s.rdb.HSetNX(ctx, keyTrunkNames(), trunkNameKey(t.Name), id).Result()
	if err != nil {
		return nil, wrapRedis(err)
	}
	if !set {
		return nil, conflict(fmt.Sprintf("a trunk named %q already exists", t.Name))
	}
	b, err := marshal(t)
	if err != nil {
		return nil, err
	}
	_, err = s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, keyTrunk(id), b, 0)
		p.ZAdd(ctx, keyTrunks(), redis.Z{Score: float64(id), Member: id})
		p.Incr(ctx, keyTrunksVersion())
		return nil
	})
	if err != nil {
		_ = s.rdb.HDel(context.WithoutCancel(ctx), keyTrunkNames(), trunkNameKey(t.Name)).Err()
		return nil, wrapRedis(err)
	}
	return &t, nil
}

// GetTrunk reads one trunk.
func (s *Store) GetTrunk(ctx context.Context, id int64) (*Trunk, error) {
	var t Trunk
	if err := s.getJSON(ctx, keyTrunk(id), &t); err != nil {
		return nil, err
	}
	return &t, nil
}

// ListTrunks returns every stored trunk, in id order.
func (s *Store) ListTrunks(ctx context.Context) ([]*Trunk, error) {
	ids, err := s.rdb.ZRange(ctx, keyTrunks(), 0, -1).Result()
	if err != nil {
		return nil, wrapRedis(err)
	}
	keys := make([]string, len(ids))
	for i, id := range ids {
		keys[i] = keyTrunk(parseID(id))
	}
	return getJSONs[Trunk](ctx, s, keys)
}

// TrunksVersion changes whenever a trunk is created, changed or deleted, so every
// node can reload its trunks when it moves.
func (s *Store) TrunksVersion(ctx context.Context) (int64, error) {
	v, err := s.rdb.Get(ctx, keyTrunksVersion()).Int64()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	return v, wrapRedis(err)
}

// UpdateTrunk changes a trunk with fn (then validates it); password, when not nil,
// replaces the stored one ("" removes it). A rename onto another trunk's name is a
// conflict.
func (s *Store) UpdateTrunk(ctx context.Context, id int64, fn func(*Trunk) error, password *string) (*Trunk, error) {
	t, err := mutate(ctx, s, keyTrunk(id), []string{keyTrunkNames()}, func(t *Trunk, p redis.Pipeliner) error {
		old := t.Name
		if err := fn(t); err != nil {
			return err
		}
		if err := t.Validate(); err != nil {
			return err
		}
		if password != nil {
			s.SealTrunkPassword(t, *password)
		}
		t.UpdatedAt = s.Now()
		if trunkNameKey(old) != trunkNameKey(t.Name) {
			owner, err := s.rdb.HGet(ctx, keyTrunkNames(), trunkNameKey(t.Name)).Result()
			if err == nil && owner != itoa(id) {
				return conflict(fmt.Sprintf("a trunk named %q already exists", t.Name))
			}
			p.HDel(ctx, keyTrunkNames(), trunkNameKey(old))
			p.HSet(ctx, keyTrunkNames(), trunkNameKey(t.Name), id)
		}
		p.Incr(ctx, keyTrunksVersion())
		return nil
	})
	return t, err
}

// DeleteTrunk removes a trunk.
func (s *Store) DeleteTrunk(ctx context.Context, id int64) error {
	t, err := s.GetTrunk(ctx, id)
	if err != nil {
		return err
	}
	_, err = s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Del(ctx, keyTrunk(id))
		p.ZRem(ctx, keyTrunks(), id)
		p.HDel(ctx, keyTrunkNames(), trunkNameKey(t.Name))
		p.Incr(ctx, keyTrunksVersion())
		return nil
	})
	return wrapRedis(err)
}
