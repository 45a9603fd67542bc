package sip

import (
	"context"
	"net"
	"net/netip"
	"sync"
	"time"

	gsip "github.com/emiago/sipgo/sip"

	"github.com/cxco/gateway/store"
)

// Trunks: the default one from the flags (Options.DefaultTrunk) and those the agency
// stores (Options.Trunks). Every node keeps a compiled snapshot that the packet path
// reads without locks, and reloads it when the store's trunk version moves (polled)
// or when ReloadTrunks is called (the API changed a trunk on this node).

// TrunkSource is where the server reads the agency's trunks (the store implements it).
type TrunkSource interface {
	ListTrunks(ctx context.Context) ([]*store.Trunk, error)
	TrunksVersion(ctx context.Context) (int64, error)
	TrunkPassword(t *store.Trunk) (string, error)
}

// trunk is one trunk, compiled for the call path.
type trunk struct {
	*store.Trunk
	prefixes []netip.Prefix
	password string
	auth     *digestAuth // InboundAuth: INVITEs must carry its credentials
	uri      store.TrunkURI
	hasURI   bool
}

// trunkSet is one snapshot of every trunk; never changed once published.
type trunkSet struct {
	version int64
	all     []*trunk // the default trunk first, then by id
}

func (s *Server) compileTrunk(ctx context.Context, t *store.Trunk, password string) *trunk {
	ct := &trunk{Trunk: t, prefixes: t.Prefixes(), password: password}
	if t.Registration.Enabled {
		// The carrier sends calls for our registration from its registrar (or
		// proxies the operator lists in allow): the registrars' addresses are
		// allowed too.
		for _, r := range t.Registrars() {
			u, err := store.ParseTrunkURI(r)
			if err != nil {
				continue
			}
			var ips []netip.Addr
			if a, err := netip.ParseAddr(u.Host); err == nil {
				ips = []netip.Addr{a}
			} else {
				rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				ips, _ = net.DefaultResolver.LookupNetIP(rctx, "ip", u.Host)
				cancel()
			}
			for _, a := range ips {
				ct.prefixes = append(ct.prefixes, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
			}
		}
	}
	if t.InboundAuth && t.Username != "" {
		ct.auth = newDigestAuth("cxco", t.Username, password, s.authGuard)
	}
	if u, err := store.ParseTrunkURI(t.URI); err == nil && t.URI != "" {
		ct.uri, ct.hasURI = u, true
	}
	return ct
}

// match is the trunk a source belongs to: the most specific allow prefix that
// contains it (the lower id on a tie); nil when none does.
func (ts *trunkSet) match(src netip.Addr) *trunk {
	var best *trunk
	bits := -1
	for _, t := range ts.all {
		for _, p := range t.prefixes {
			if p.Contains(src) && p.Bits() > bits {
				best, bits = t, p.Bits()
			}
		}
	}
	return best
}

// byID finds a trunk (0 is the default one).
func (ts *trunkSet) byID(id int64) *trunk {
	for _, t := range ts.all {
		if t.ID == id {
			return t
		}
	}
	return nil
}

func (s *Server) trunks() *trunkSet { return s.trunkSnap.Load() }

// ReloadTrunks reads the stored trunks now (the API calls it after a change); the
// other nodes see the change within a poll interval.
func (s *Server) ReloadTrunks(ctx context.Context) error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	var ver int64
	var stored []*store.Trunk
	if src := s.opt.Trunks; src != nil {
		var err error
		if ver, err = src.TrunksVersion(ctx); err != nil {
			return err
		}
		if stored, err = src.ListTrunks(ctx); err != nil {
			return err
		}
	}
	def := s.opt.DefaultTrunk
	all := []*trunk{s.compileTrunk(ctx, &def, s.opt.DefaultTrunkPassword)}
	for _, t := range stored {
		pw, err := s.opt.Trunks.TrunkPassword(t)
		if err != nil {
			s.log.Error("cannot open a trunk's password (wrong --secret-key?); it cannot authenticate", "trunk", t.Name, "err", err)
		}
		all = append(all, s.compileTrunk(ctx, t, pw))
	}
	s.trunkSnap.Store(&trunkSet{version: ver, all: all})
	if clients, err := s.loadClientCerts(all); err != nil {
		s.log.Error("a trunk's TLS client certificate cannot be read", "err", err)
		s.certs.addClients(clients)
	} else {
		s.certs.addClients(clients)
	}
	if s.listening.Load() { // registrations follow the trunks once the sockets serve
		s.regs.sync(all)
	}
	return nil
}

// watchTrunks polls the store's trunk version and reloads when it moves.
func (s *Server) watchTrunks(stop <-chan struct{}, every time.Duration, wg *sync.WaitGroup) {
	defer wg.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		ver, err := s.opt.Trunks.TrunksVersion(ctx)
		if err == nil && ver != s.trunks().version {
			if err = s.ReloadTrunks(ctx); err == nil {
				s.log.Info("trunks reloaded", "version", ver, "trunks", len(s.trunks().all))
			}
		}
		cancel()
		if err != nil {
			s.log.Debug("trunk reload failed; keeping the trunks we have", "err", err)
		}
	}
}

// trunkOf is the trunk a request came from (by its source address).
func (s *Server) trunkOf(req *gsip.Request) *trunk {
	ap, err := netip.ParseAddrPort(req.Source())
	if err != nil {
		return nil
	}
	return s.trunks().match(ap.Addr().Unmap())
}

// DefaultTrunk is the trunk of the flags.
func (s *Server) DefaultTrunk() store.Trunk { return s.opt.DefaultTrunk }
