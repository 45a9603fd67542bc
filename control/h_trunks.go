package control

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cxco/gateway/store"
)

// Trunks as data: the agency adds carriers with GET/POST/PUT/DELETE
// /api/agency/trunks. The default trunk (id 0) is the one the flags of `cxco
// serve` describe; it is listed, read-only. Passwords are sealed like provider
// credentials and never read back.

// TrunkRuntime is the SIP side's view of the trunks (cmd wires the SIP server in).
type TrunkRuntime interface {
	// DefaultTrunk is the trunk of the flags.
	DefaultTrunk() store.Trunk
	// ReloadTrunks makes a change visible on this node at once (other nodes poll).
	ReloadTrunks(ctx context.Context) error
	// Registrations are this node's registrations to the trunks' registrars.
	Registrations() []Registration
}

// Registration is the state of one registration of this node to a registrar.
type Registration struct {
	TrunkID     int64      `json:"trunk_id"`
	Trunk       string     `json:"trunk"`
	Registrar   string     `json:"registrar"`            // the registrar in use (primary or a fallback)
	AOR         string     `json:"aor"`                  // the address-of-record registered
	Contact     string     `json:"contact"`              // the contact bound to it
	State       string     `json:"state"`                // registering, registered, failed, unregistered
	Expires     *time.Time `json:"expires_at"`           // when the binding runs out (registered)
	LastError   string     `json:"last_error,omitempty"` // why the last attempt failed
	LastStatus  int        `json:"last_status,omitempty"`
	Failures    int        `json:"consecutive_failures"`
	NextAttempt *time.Time `json:"next_attempt_at"`
}

// trunkInput is what a client may set on a trunk.
type trunkInput struct {
	Name         string                  `json:"name"`
	Allow        []string                `json:"allow"`
	URI          string                  `json:"uri"`
	Username     string                  `json:"username"`
	Password     *string                 `json:"password"`
	InboundAuth  bool                    `json:"inbound_auth"`
	TLS          store.TrunkTLS          `json:"tls"`
	SRTP         string                  `json:"srtp"`
	Codecs       []string                `json:"codecs"`
	NAT          store.TrunkNAT          `json:"nat"`
	Numbers      store.NumberRule        `json:"numbers"`
	Registration store.TrunkRegistration `json:"registration"`
}

var trunkFields = []string{"name", "allow", "uri", "username", "password", "inbound_auth", "tls", "srtp", "codecs", "nat", "numbers", "registration"}

func inputOf(t *store.Trunk) trunkInput {
	return trunkInput{Name: t.Name, Allow: t.Allow, URI: t.URI, Username: t.Username, InboundAuth: t.InboundAuth, TLS: t.TLS,
		SRTP: t.SRTP, Codecs: t.Codecs, NAT: t.NAT, Numbers: t.Numbers, Registration: t.Registration}
}

func (in trunkInput) apply(t *store.Trunk) {
	t.Name, t.Allow, t.URI, t.Username, t.InboundAuth, t.TLS = in.Name, in.Allow, in.URI, in.Username, in.InboundAuth, in.TLS
	t.SRTP, t.Codecs, t.NAT, t.Numbers, t.Registration = in.SRTP, in.Codecs, in.NAT, in.Numbers, in.Registration
}

// readTrunkInput reads a trunk body over base: the fields sent replace base's
// (an object field is replaced whole). Unknown fields, also inside objects, are 422.
func readTrunkInput(c *call, base trunkInput) (trunkInput, error) {
	f, err := readForm(c.w, c.r, trunkFields...)
	if err != nil {
		return base, err
	}
	if err := checkObjectFields(f, reflect.TypeFor[trunkInput]()); err != nil {
		return base, err
	}
	merged := map[string]json.RawMessage{}
	raw, _ := json.Marshal(base)
	_ = json.Unmarshal(raw, &merged)
	for k, v := range f.m {
		merged[k] = v
	}
	raw, _ = json.Marshal(merged)
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	var in trunkInput
	if err := dec.Decode(&in); err != nil {
		var ute *json.UnmarshalTypeError
		if errors.As(err, &ute) && ute.Field != "" {
			if ft, found := jsonField(reflect.TypeFor[trunkInput](), ute.Field); found {
				return base, invalid("%s: must be %s", ute.Field, describeJSON(ft))
			}
		}
		return base, invalid("trunk: %v", err)
	}
	if in.Allow == nil {
		in.Allow = []string{}
	}
	return in, nil
}

// trunkView is a trunk as the API shows it.
type trunkView struct {
	ID            int64                   `json:"id"`
	Name          string                  `json:"name"`
	Source        string                  `json:"source"` // "flags" (the default trunk, read-only) or "api"
	Allow         []string                `json:"allow"`
	URI           string                  `json:"uri"`
	Username      string                  `json:"username"`
	HasPassword   bool                    `json:"has_password"`
	InboundAuth   bool                    `json:"inbound_auth"`
	TLS           store.TrunkTLS          `json:"tls"`
	SRTP          string                  `json:"srtp"`
	Codecs        []string                `json:"codecs"`
	NAT           store.TrunkNAT          `json:"nat"`
	Numbers       store.NumberRule        `json:"numbers"`
	Registration  store.TrunkRegistration `json:"registration"`
	Registrations []Registration          `json:"registrations"`
	CreatedAt     *string                 `json:"created_at"`
	UpdatedAt     *string                 `json:"updated_at"`
}

func (s *Server) viewTrunk(t *store.Trunk, source string, hasPassword bool) trunkView {
	v := trunkView{ID: t.ID, Name: t.Name, Source: source, Allow: t.Allow, URI: t.URI, Username: t.Username, HasPassword: hasPassword,
		InboundAuth: t.InboundAuth, TLS: t.TLS, SRTP: t.SRTPPolicy(), Codecs: t.Codecs, NAT: t.NAT, Numbers: t.Numbers,
		Registration: t.Registration, Registrations: []Registration{}}
	if v.Allow == nil {
		v.Allow = []string{}
	}
	if v.Codecs == nil {
		// None named: PCMU and PCMA in the caller's order. Shown as none, so that
		// writing back what was read does not turn it into an order of our own.
		v.Codecs = []string{}
	}
	if !t.CreatedAt.IsZero() {
		c, u := rfc3339(t.CreatedAt), rfc3339(t.UpdatedAt)
		v.CreatedAt, v.UpdatedAt = &c, &u
	}
	if rt := s.opts.Trunks; rt != nil {
		for _, r := range rt.Registrations() {
			if r.TrunkID == t.ID {
				v.Registrations = append(v.Registrations, r)
			}
		}
	}
	return v
}

func (s *Server) defaultTrunkView() (trunkView, bool) {
	if s.opts.Trunks == nil {
		return trunkView{}, false
	}
	d := s.opts.Trunks.DefaultTrunk()
	return s.viewTrunk(&d, "flags", s.opts.DefaultTrunkHasPassword), true
}

type trunkList struct {
	Items []trunkView `json:"items"`
}

func (s *Server) listTrunks(c *call) (result, error) {
	out := trunkList{Items: []trunkView{}}
	if d, found := s.defaultTrunkView(); found {
		out.Items = append(out.Items, d)
	}
	ts, err := s.st.ListTrunks(c.ctx)
	if err != nil {
		return result{}, err
	}
	for _, t := range ts {
		out.Items = append(out.Items, s.viewTrunk(t, "api", t.HasPassword()))
	}
	return ok(out)
}

// trunkID reads {trunk_id}; 0 is the default trunk.
func (c *call) trunkID() (int64, error) {
	id, err := strconv.ParseInt(c.r.PathValue("trunk_id"), 10, 64)
	if err != nil || id < 0 {
		return 0, invalid("trunk_id: %q is not a trunk id", c.r.PathValue("trunk_id"))
	}
	return id, nil
}

var errDefaultTrunk = errf(http.StatusConflict, typeConflict, "trunk 0 is the default trunk: it comes from the flags of cxco serve (--trunk-*) and changes with them")

func (s *Server) getTrunk(c *call) (result, error) {
	id, err := c.trunkID()
	if err != nil {
		return result{}, err
	}
	if id == 0 {
		if d, found := s.defaultTrunkView(); found {
			return ok(d)
		}
		return result{}, store.ErrNotFound
	}
	t, err := s.st.GetTrunk(c.ctx, id)
	if err != nil {
		return result{}, err
	}
	return ok(s.viewTrunk(t, "api", t.HasPassword()))
}

func (s *Server) createTrunk(c *call) (result, error) {
	in, err := readTrunkInput(c, trunkInput{Allow: []string{}})
	if err != nil {
		return result{}, err
	}
	var t store.Trunk
	in.apply(&t)
	pw := ""
	if in.Password != nil {
		pw = *in.Password
	}
	if pw != "" && t.Username == "" {
		return result{}, invalid("password: needs a username")
	}
	nt, err := s.st.CreateTrunk(c.ctx, t, pw)
	if err != nil {
		return result{}, trunkErr(err)
	}
	s.trunksChanged(c.ctx)
	return created(s.viewTrunk(nt, "api", nt.HasPassword()))
}

func (s *Server) putTrunk(c *call) (result, error) {
	id, err := c.trunkID()
	if err != nil {
		return result{}, err
	}
	if id == 0 {
		return result{}, errDefaultTrunk
	}
	cur, err := s.st.GetTrunk(c.ctx, id)
	if err != nil {
		return result{}, err
	}
	in, err := readTrunkInput(c, inputOf(cur))
	if err != nil {
		return result{}, err
	}
	t, err := s.st.UpdateTrunk(c.ctx, id, func(t *store.Trunk) error {
		in.apply(t)
		if t.Username == "" && (t.HasPassword() && in.Password == nil || in.Password != nil && *in.Password != "") {
			return invalid("password: needs a username")
		}
		return nil
	}, in.Password)
	if err != nil {
		return result{}, trunkErr(err)
	}
	s.trunksChanged(c.ctx)
	return ok(s.viewTrunk(t, "api", t.HasPassword()))
}

func (s *Server) deleteTrunk(c *call) (result, error) {
	id, err := c.trunkID()
	if err != nil {
		return result{}, err
	}
	if id == 0 {
		return result{}, errDefaultTrunk
	}
	if err := s.st.DeleteTrunk(c.ctx, id); err != nil {
		return result{}, err
	}
	s.trunksChanged(c.ctx)
	return noContent()
}

func (s *Server) listRegistrations(c *call) (result, error) {
	out := []Registration{}
	if rt := s.opts.Trunks; rt != nil {
		out = append(out, rt.Registrations()...)
	}
	return ok(out)
}

// trunksChanged reloads this node's trunks now; a failure only delays it to the
// next poll.
func (s *Server) trunksChanged(ctx context.Context) {
	if rt := s.opts.Trunks; rt != nil {
		if err := rt.ReloadTrunks(ctx); err != nil {
			s.log.Warn("trunks changed but could not be reloaded now; the next poll will", "err", err)
		}
	}
}

func trunkErr(err error) error {
	var ie *store.InvalidError
	if errors.As(err, &ie) {
		return invalid("%s", ie.Detail)
	}
	return err
}

func trunkSchemas() js {
	tls := strict(object(nil, js{
		"client_cert_file": str("PEM certificate we present to a trunk that asks for one (mutual TLS); reloaded on SIGHUP"),
		"client_key_file":  str("its PEM private key")}))
	nat := strict(object(nil, js{"latching": js{"type": "string", "enum": []string{"", store.LatchOff, store.LatchSource},
		"description": "where RTP is accepted from: off (the SDP's address only) or signalling_source (also the signalling source's address, for a trunk behind NAT); empty: the gateway's default"}}))
	numbers := strict(object(nil, js{
		"country":              str("ISO 3166-1 alpha-2: numbers in national format (0…) and with the international prefix (00…) become E.164; empty: numbers are E.164, the + optional"),
		"national_prefix":      str("override the country's national prefix (digits, may be empty)"),
		"international_prefix": str("override the country's international prefix (digits)")}))
	reg := strict(object(nil, js{
		"enabled":    boolean(),
		"registrars": js{"type": "array", "items": str(), "description": "sip: or sips: URIs tried in order (primary first); empty: the trunk's uri"},
		"user":       str("address-of-record user (default: username)"),
		"expires":    js{"type": "integer", "minimum": 60, "maximum": 86400, "default": 600}}))
	codecs := js{"type": "array", "items": strEnum(store.TrunkCodecs...), "description": "preference order, which wins over the caller's; empty: PCMU and PCMA in the caller's order"}
	srtp := js{"type": "string", "enum": []string{store.SRTPDisabled, store.SRTPOptional, store.SRTPRequired}, "default": store.SRTPDisabled}
	input := js{
		"name": str(), "allow": js{"type": "array", "items": str(), "description": "CIDRs (or addresses) that may send this trunk's requests"},
		"uri":          str("sip:host[:port][;transport=udp|tcp|tls] or sips:host[:port]: where transfers and registrations go"),
		"username":     str("digest user towards the trunk (and of its INVITEs when inbound_auth)"),
		"password":     js{"type": []string{"string", "null"}, "description": "sealed at rest, never shown; \"\" removes it"},
		"inbound_auth": boolean(), "tls": tls, "srtp": srtp, "codecs": codecs, "nat": nat, "numbers": numbers, "registration": reg}
	regState := object([]string{"trunk_id", "trunk", "registrar", "aor", "contact", "state", "expires_at", "consecutive_failures", "next_attempt_at"}, js{
		"trunk_id": integer(), "trunk": str(), "registrar": str(), "aor": str(), "contact": str(),
		"state":      strEnum("registering", "registered", "failed", "unregistered"),
		"expires_at": nullable("string"), "last_error": str(), "last_status": integer(), "consecutive_failures": integer(),
		"next_attempt_at": nullable("string")})
	view := object([]string{"id", "name", "source", "allow", "srtp", "codecs", "registration", "registrations"}, js{
		"id": js{"type": "integer", "description": "0 is the default trunk of the flags (read-only)"}, "name": str(),
		"source": strEnum("flags", "api"), "allow": arrayOf(str()), "uri": str(), "username": str(), "has_password": boolean(),
		"inbound_auth": boolean(), "tls": tls, "srtp": srtp, "codecs": codecs, "nat": nat, "numbers": numbers, "registration": reg,
		"registrations": arrayOf(ref("Registration")), "created_at": nullable("string"), "updated_at": nullable("string")})
	return js{
		"Trunk": view, "TrunkList": object([]string{"items"}, js{"items": arrayOf(ref("Trunk"))}),
		"TrunkCreate": strict(object([]string{"name"}, input)), "TrunkUpdate": strict(object(nil, input)),
		"Registration": regState, "RegistrationList": arrayOf(ref("Registration")),
	}
}

// trunkRoutes are the trunk routes (added to the table in routes_extra.go).
func (s *Server) trunkRoutes() []*route {
	tr := func(method, path, summary string, status int, body, resp string, errs []int, h func(*call) (result, error)) *route {
		rl := roleOwner
		if method == "GET" {
			rl = roleViewer
		}
		return &route{method: method, path: path, auth: authAgency, role: rl, tag: "Agency", summary: summary, resource: "trunk",
			body: body, resp: resp, status: status, errors: errs, h: h}
	}
	return []*route{
		tr("GET", "/api/agency/trunks", "List the SIP trunks (the default trunk of the flags first)", 200, "", "TrunkList", nil, s.listTrunks),
		tr("POST", "/api/agency/trunks", "Add a SIP trunk (carrier)", 201, "TrunkCreate", "Trunk", []int{409, 422}, s.createTrunk),
		tr("GET", "/api/agency/trunks/{trunk_id}", "Get a SIP trunk with its registration state", 200, "", "Trunk", []int{404, 422}, s.getTrunk),
		tr("PUT", "/api/agency/trunks/{trunk_id}", "Update a SIP trunk (only provided fields; objects are replaced whole)", 200, "TrunkUpdate", "Trunk", []int{404, 409, 422}, s.putTrunk),
		tr("DELETE", "/api/agency/trunks/{trunk_id}", "Remove a SIP trunk", 204, "", "", []int{404, 409, 422}, s.deleteTrunk),
		tr("GET", "/api/agency/registrations", "This node's registrations to the trunks' registrars", 200, "", "RegistrationList", nil, s.listRegistrations),
	}
}

// checkObjectFields refuses, in the API's words, a field of t's object fields
// (tls, nat, numbers, registration) that is not an object or holds a key the
// object does not have: "tls.verify: unknown field".
func checkObjectFields(f *form, t reflect.Type) error {
	for k, raw := range f.m {
		ft, found := jsonField(t, k)
		if !found || ft.Kind() != reflect.Struct || string(raw) == "null" {
			continue
		}
		var m map[string]json.RawMessage
		if err := json.Unmarshal(raw, &m); err != nil {
			return invalid("%s: must be an object", k)
		}
		names := jsonNames(ft)
		for nk := range m {
			if !slices.Contains(names, nk) {
				return invalid("%s.%s: unknown field (allowed: %s)", k, nk, strings.Join(names, ", "))
			}
		}
	}
	return nil
}

// jsonNames are the JSON names of struct t's fields, in order.
func jsonNames(t reflect.Type) []string {
	var out []string
	for sf := range t.Fields() {
		if name, _, _ := strings.Cut(sf.Tag.Get("json"), ","); name != "" && name != "-" {
			out = append(out, name)
		}
	}
	return out
}

// jsonField is the type of the field a dotted JSON path ("numbers.country") names in t.
func jsonField(t reflect.Type, path string) (reflect.Type, bool) {
	for name := range strings.SplitSeq(path, ".") {
		for t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		if t.Kind() != reflect.Struct {
			return nil, false
		}
		found := false
		for sf := range t.Fields() {
			if n, _, _ := strings.Cut(sf.Tag.Get("json"), ","); n == name {
				t, found = sf.Type, true
				break
			}
		}
		if !found {
			return nil, false
		}
	}
	return t, true
}

// describeJSON says what a JSON value decoded into t must be.
func describeJSON(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64, reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.String {
			return "an array of strings"
		}
		return "an array"
	case reflect.Struct, reflect.Map:
		return "an object"
	}
	return "of another type"
}
