// Package control is the HTTP control plane: the documented CXCo REST API, the agency
// API above it, authentication, rate limits, paging, errors and the OpenAPI document.
package control

import (
	"context"
	"encoding/base64"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cxco/gateway/control/apidocs"
	"github.com/cxco/gateway/store"
)

// Provisioner keeps agents in step with the voice-AI provider (bridge implements it).
type Provisioner interface {
	CreateAgent(ctx context.Context, a *store.Agent) (store.ProviderAgent, error)
	// UpdateAgent pushes a's configuration and may change a.Provider (its tools).
	UpdateAgent(ctx context.Context, a *store.Agent) error
	// DeleteAgent removes a at the provider; one already gone there is no error.
	DeleteAgent(ctx context.Context, a *store.Agent) error
	// Delete undoes a CreateAgent whose publish failed afterwards.
	Delete(ctx context.Context, cid int64, made store.ProviderAgent) error
}

// Options configure the control plane.
type Options struct {
	Store       *store.Store
	Provisioner Provisioner
	Logger      *slog.Logger
	// WebhookAllowInsecure allows http:// and private/loopback webhook targets.
	WebhookAllowInsecure bool
	// WhatsAppVerifyDelay is how long the built-in verifier takes.
	WhatsAppVerifyDelay time.Duration
	// Observe, when set, is told about every API request (for metrics).
	Observe func(route string, status int, d time.Duration)
	// Extra mounts more handlers (e.g. /metrics, the dashboard) on the same listener.
	Extra map[string]http.Handler
	// TestCaller places WebRTC test calls (nil: POST .../test-call answers 503).
	TestCaller TestCaller
	// Outbound places the agents' outbound calls (nil: POST .../calls answers 503).
	Outbound OutboundCaller
	// Version is the gateway's version, as GET /api tells it.
	Version string
	// Trunks is the SIP side's view of the trunks (nil: only stored trunks are listed).
	Trunks TrunkRuntime
	// DefaultTrunkHasPassword says whether the flags gave the default trunk a password.
	DefaultTrunkHasPassword bool
	// ReadTimeout bounds how long a request may take to arrive whole, body included
	// (default 30 s; a slow body gets 408). WriteTimeout bounds writing an API
	// answer (default 60 s). Both are set per request (http.ResponseController),
	// the read deadline on every request this handler serves, the write deadline on
	// API routes only: an Extra handler that streams or takes the connection over
	// (a websocket) must clear the read deadline itself.
	ReadTimeout, WriteTimeout time.Duration
	// KeyConcurrency bounds the API requests one key may have in progress at once
	// (default 32); more get 429 at once.
	KeyConcurrency int
}

// Server serves the API.
type Server struct {
	opts    Options
	st      *store.Store
	log     *slog.Logger
	mux     *http.ServeMux
	routes  []*route
	handler http.Handler
	waKick  chan struct{}
	live    *liveHub
	// streamsDone is closed by CloseStreams: event streams end (a server's
	// Shutdown waits for idle connections, which a stream never is).
	streamsDone chan struct{}
	closeOnce   sync.Once

	inflightMu sync.Mutex
	inflight   map[string]int // API requests in progress, per key (principal)
}

// New builds the control plane.
func New(opts Options) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.ReadTimeout <= 0 {
		opts.ReadTimeout = 30 * time.Second
	}
	if opts.WriteTimeout <= 0 {
		opts.WriteTimeout = 60 * time.Second
	}
	if opts.KeyConcurrency <= 0 {
		opts.KeyConcurrency = 32
	}
	s := &Server{opts: opts, st: opts.Store, log: opts.Logger, mux: http.NewServeMux(), waKick: make(chan struct{}, 1),
		streamsDone: make(chan struct{}), inflight: map[string]int{}}
	s.live = &liveHub{st: opts.Store, subs: map[*liveSub]struct{}{}}
	s.routes = s.table()
	if err := checkRoutes(s.routes); err != nil {
		panic(err) // a route without a role is a bug, caught by every test that builds a Server
	}
	for _, rt := range s.routes {
		s.mux.Handle(rt.method+" "+rt.path, s.wrap(rt))
	}
	s.mux.Handle("GET "+apidocs.Path+"/", apidocs.Handler(http.HandlerFunc(noRoute))) // the page's files
	for pattern, h := range opts.Extra {
		s.mux.Handle(pattern, h)
	}
	s.handler = http.HandlerFunc(s.serve)
	return s
}

// Handler is the control plane's root handler.
func (s *Server) Handler() http.Handler { return s.handler }

// serve normalises the path (a trailing slash is optional) and answers unknown routes
// and wrong methods with the JSON error body.
func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	// A slow body (one byte now and then) cannot hold a connection and a handler.
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(s.opts.ReadTimeout))
	if p := r.URL.Path; len(p) > 1 && strings.HasSuffix(p, "/") {
		r.URL.Path = strings.TrimRight(p, "/")
		r.URL.RawPath = ""
	}
	if _, pattern := s.mux.Handler(r); pattern != "" {
		s.mux.ServeHTTP(w, r)
		return
	}
	var allow []string
	for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
		probe := r.Clone(r.Context())
		probe.Method = m
		if _, p := s.mux.Handler(probe); p != "" {
			allow = append(allow, m)
		}
	}
	if len(allow) > 0 {
		w.Header().Set("Allow", strings.Join(allow, ", "))
		writeError(w, errf(http.StatusMethodNotAllowed, typeMethod, "method %s is not allowed on %s (allowed: %s)", r.Method, r.URL.Path, strings.Join(allow, ", ")))
		return
	}
	noRoute(w, r)
}

// noRoute is the 404 of a path nothing serves.
func noRoute(w http.ResponseWriter, r *http.Request) {
	writeError(w, errf(http.StatusNotFound, typeNotFound, "no such route: %s %s", r.Method, r.URL.Path))
}

// call is one API request on its way through a handler.
type call struct {
	w       http.ResponseWriter
	r       *http.Request
	ctx     context.Context
	p       store.Principal
	company *store.Company
	user    *store.User // a user key's user, when its role was checked
	s       *Server
}

// authKind says which keys a route takes.
type authKind int

const (
	authNone    authKind = iota
	authAny              // company or user key
	authCompany          // company key
	authUser             // user key
	authAgency           // agency key
	authAll              // any key: the agency's sees every company, the others their own
)

// result is what a handler returns: a status and a body (nil for 204).
type result struct {
	status int
	body   any
}

func ok(body any) (result, error)      { return result{http.StatusOK, body}, nil }
func created(body any) (result, error) { return result{http.StatusCreated, body}, nil }
func noContent() (result, error)       { return result{http.StatusNoContent, nil}, nil }

// statusWriter remembers the status for logs and metrics.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController reach the connection (flushing a stream).
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (s *Server) wrap(rt *route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		defer func() {
			if v := recover(); v != nil {
				s.log.Error("panic in API handler", "route", rt.pattern(), "panic", v)
				if sw.status == 0 {
					writeError(sw, errf(http.StatusInternalServerError, typeInternal, "internal error"))
				}
			}
			if sw.status == 0 {
				sw.status = http.StatusOK
			}
			if s.opts.Observe != nil {
				s.opts.Observe(rt.pattern(), sw.status, time.Since(start))
			}
			if sw.status >= 500 {
				s.log.Warn("API request failed", "method", r.Method, "path", r.URL.Path, "status", sw.status)
			}
		}()
		if rc := http.NewResponseController(w); rt.stream != nil {
			// An event stream lasts as long as the client watches: no deadlines (the
			// read deadline would end it: net/http cancels the request when its
			// background read fails).
			_ = rc.SetReadDeadline(time.Time{})
		} else {
			_ = rc.SetWriteDeadline(time.Now().Add(s.opts.WriteTimeout))
		}
		if rt.page != nil {
			rt.page.ServeHTTP(sw, r)
			return
		}
		c := &call{w: sw, r: r, ctx: r.Context(), s: s}
		if rt.auth != authNone {
			if e := s.authenticate(c, rt.auth); e != nil {
				s.refuse(sw, r, rt, e)
				return
			}
			if e := s.authorize(c, rt.role); e != nil {
				s.refuse(sw, r, rt, e)
				return
			}
			if rt.stream == nil { // streams are long and idle: not "in progress" work
				release, e := s.acquire(c)
				if e != nil {
					s.refuse(sw, r, rt, e)
					return
				}
				defer release()
			}
		}
		if rt.stream != nil {
			if err := rt.stream(c); err != nil && sw.status == 0 {
				writeError(sw, toAPIError(err, rt.resource))
			}
			return
		}
		res, err := rt.h(c)
		if err != nil {
			s.fail(sw, r, rt, toAPIError(err, rt.resource), err)
			return
		}
		writeJSON(sw, res.status, res.body)
	})
}

// fail answers an error. A client that went away before the answer is recorded
// as 499 client_closed (nothing is sent, nothing is logged as a failure: the
// store call it cut short is not the gateway's fault).
func (s *Server) fail(w *statusWriter, r *http.Request, rt *route, e *apiError, cause error) {
	// A body read that timed out cancels the request's context too; that client is
	// still there to be told 408.
	if r.Context().Err() != nil && e.Type != typeTimeout {
		w.status = statusClientClosed
		s.log.Debug("API client went away", "route", rt.pattern(), "error_type", typeClientClosed)
		return
	}
	if e.Status == http.StatusInternalServerError {
		s.log.Error("API handler error", "route", rt.pattern(), "err", cause)
	}
	writeError(w, e)
}

// refuse answers a request refused before its handler ran. Its body is unread:
// the connection closes after the answer, so the answer goes out at once rather
// than after net/http has drained the body (a slow body would hold it for the
// whole read timeout).
func (s *Server) refuse(w *statusWriter, r *http.Request, rt *route, e *apiError) {
	if r.ContentLength != 0 {
		w.Header().Set("Connection", "close")
	}
	s.fail(w, r, rt, e, nil)
}

// acquire takes one of the key's KeyConcurrency slots; release gives it back.
func (s *Server) acquire(c *call) (release func(), e *apiError) {
	who := fmt.Sprintf("%s:%d:%d", c.p.Kind, c.p.CompanyID, c.p.UserID)
	s.inflightMu.Lock()
	defer s.inflightMu.Unlock()
	if s.inflight[who] >= s.opts.KeyConcurrency {
		c.w.Header().Set("Retry-After", "1")
		return nil, errf(http.StatusTooManyRequests, typeRateLimited, "this key has %d requests in progress already (at most %d at once)", s.inflight[who], s.opts.KeyConcurrency)
	}
	s.inflight[who]++
	return func() {
		s.inflightMu.Lock()
		defer s.inflightMu.Unlock()
		if s.inflight[who]--; s.inflight[who] <= 0 {
			delete(s.inflight, who)
		}
	}, nil
}

// apiKey reads the key from X-API-Key or Authorization (with an optional Bearer prefix).
func apiKey(r *http.Request) string {
	if k := strings.TrimSpace(r.Header.Get("X-API-Key")); k != "" {
		return k
	}
	k := strings.TrimSpace(r.Header.Get("Authorization"))
	if len(k) > 7 && strings.EqualFold(k[:7], "bearer ") {
		k = strings.TrimSpace(k[7:])
	}
	return k
}

func (s *Server) authenticate(c *call, need authKind) *apiError {
	key := apiKey(c.r)
	if key == "" {
		return errf(http.StatusUnauthorized, typeAuth, "missing API key: send it in the X-API-Key header")
	}
	p, err := s.st.LookupKey(c.ctx, key)
	if err != nil {
		if e := toAPIError(err, ""); e.Status == http.StatusServiceUnavailable {
			return e
		}
		return errf(http.StatusUnauthorized, typeAuth, "invalid API key")
	}
	c.p = p
	if p.Kind != "agency" {
		co, err := s.st.GetCompany(c.ctx, p.CompanyID)
		if err != nil {
			if e := toAPIError(err, ""); e.Status == http.StatusServiceUnavailable {
				return e
			}
			return errf(http.StatusUnauthorized, typeAuth, "invalid API key")
		}
		c.company = co
		rr, err := s.st.AllowRequest(c.ctx, co.ID, co.RateLimit())
		if err != nil {
			return toAPIError(err, "")
		}
		h := c.w.Header()
		h.Set("X-RateLimit-Limit", strconv.Itoa(rr.Limit))
		h.Set("X-RateLimit-Remaining", strconv.Itoa(rr.Remaining))
		h.Set("X-RateLimit-Reset", strconv.FormatInt(rr.Reset.Unix(), 10))
		if !rr.Allowed {
			h.Set("Retry-After", strconv.Itoa(int(rr.RetryAfter/time.Second)))
			return errf(http.StatusTooManyRequests, typeRateLimited, "rate limit of %d requests per minute exceeded (plan %s); retry after %d s", rr.Limit, co.Plan, int(rr.RetryAfter/time.Second))
		}
		if co.Status == store.CompanySuspended {
			return errf(http.StatusForbidden, typePermission, "company %d is suspended", co.ID)
		}
	}
	kindOK := map[authKind]bool{
		authAny:     p.Kind == "company" || p.Kind == "user",
		authCompany: p.Kind == "company",
		authUser:    p.Kind == "user",
		authAgency:  p.Kind == "agency",
		authAll:     true,
	}[need]
	if !kindOK {
		want := map[authKind]string{authAny: "a company or user key", authCompany: "a company key (cxco_comp_k_)",
			authUser: "a user key (cxco_user_k_)", authAgency: "the agency key (cxco_agcy_k_)"}[need]
		sent := "a " + p.Kind
		if p.Kind == "agency" {
			sent = "an agency"
		}
		return errf(http.StatusForbidden, typePermission, "this endpoint needs %s; you sent %s key", want, sent)
	}
	return nil
}

// pathID reads an integer path parameter.
func (c *call) pathID(name string) (int64, error) {
	v := c.r.PathValue(name)
	id, err := strconv.ParseInt(v, 10, 64)
	if err != nil || id <= 0 {
		return 0, invalid("%s: %q is not a valid id (a positive integer)", name, v)
	}
	return id, nil
}

func (c *call) query(k string) string { return strings.TrimSpace(c.r.URL.Query().Get(k)) }

// queryID reads an optional id query parameter (0 when absent).
func (c *call) queryID(name string) (int64, error) {
	v := c.query(name)
	if v == "" {
		return 0, nil
	}
	id, err := strconv.ParseInt(v, 10, 64)
	if err != nil || id <= 0 {
		return 0, invalid("%s: %q is not a valid id", name, v)
	}
	return id, nil
}

// paging reads limit and cursor.
func (c *call) paging() (int64, int, error) {
	limit := defaultPageLimit
	if v := c.query("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			return 0, 0, invalid("limit: %q is not an integer", v)
		}
		if n < 1 || n > maxPageLimit {
			return 0, 0, invalid("limit: must be between 1 and %d (got %d)", maxPageLimit, n)
		}
		limit = n
	}
	var cursor int64
	if v := c.query("cursor"); v != "" {
		raw, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(v, "="))
		id, err2 := strconv.ParseInt(strings.TrimPrefix(string(raw), "id:"), 10, 64)
		if err != nil || err2 != nil || !strings.HasPrefix(string(raw), "id:") || id <= 0 {
			return 0, 0, invalid("cursor: %q is not a cursor this API returned", v)
		}
		cursor = id
	}
	return cursor, limit, nil
}

// pageBody is the paged list body.
type pageBody struct {
	Items      any     `json:"items"`
	HasMore    bool    `json:"has_more"`
	NextCursor *string `json:"next_cursor"`
}

func newPage[T any](items []T, more bool, next int64) pageBody {
	pb := pageBody{Items: items, HasMore: more}
	if items == nil {
		pb.Items = []T{}
	}
	if more && next > 0 {
		s := base64.RawURLEncoding.EncodeToString([]byte("id:" + strconv.FormatInt(next, 10)))
		pb.NextCursor = &s
	}
	return pb
}

// companyID is the caller's company.
func (c *call) companyID() int64 { return c.p.CompanyID }
