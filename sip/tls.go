package sip

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
)

// SIP over TLS (RFC 3261 §26, RFC 5630): a listener of its own (--sip-tls) with a
// certificate and key read from files and read again on Reload (SIGHUP) without
// touching the connections already up, so calls carry on; and outbound TLS
// (registrations, transfers) that verifies the peer against the CA file (or the
// system's roots) and presents the trunk's client certificate when the trunk
// asks for one (mutual TLS).

// tlsCerts holds the certificates in use; Reload swaps them whole.
type tlsCerts struct {
	mu     sync.Mutex // orders reloads
	server atomic.Pointer[tls.Certificate]
	roots  atomic.Pointer[x509.CertPool] // nil: the system's
	// client certificates by trunk id (read from the trunks' files)
	clients atomic.Pointer[map[int64]*tls.Certificate]
}

type trunkCtxKey struct{}

// withTrunk marks a context as being on a trunk's behalf: a TLS connection
// dialled under it presents the trunk's client certificate.
func withTrunk(ctx context.Context, t *trunk) context.Context {
	return context.WithValue(ctx, trunkCtxKey{}, t)
}

// serverConfig is the TLS config of the --sip-tls listener.
func (s *Server) serverTLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			if c := s.certs.server.Load(); c != nil {
				return c, nil
			}
			return nil, errors.New("no server certificate")
		},
	}
}

// clientTLSConfig is the TLS config of every connection we dial: the peer is
// verified (its name from the URI we dial; sipgo sets ServerName) against the
// CA file or the system's roots, and a trunk's client certificate is presented
// when the peer asks for one.
func (s *Server) clientTLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		// RootCAs cannot change per handshake; verify ourselves so a reload of
		// the CA file applies to the next connection.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("tls: the peer sent no certificate")
			}
			opts := x509.VerifyOptions{DNSName: cs.ServerName, Roots: s.certs.roots.Load(), Intermediates: x509.NewCertPool()}
			for _, c := range cs.PeerCertificates[1:] {
				opts.Intermediates.AddCert(c)
			}
			_, err := cs.PeerCertificates[0].Verify(opts)
			return err
		},
		GetClientCertificate: func(cri *tls.CertificateRequestInfo) (*tls.Certificate, error) {
			t, _ := cri.Context().Value(trunkCtxKey{}).(*trunk)
			if t != nil {
				if m := s.certs.clients.Load(); m != nil {
					if c := (*m)[t.ID]; c != nil {
						return c, nil
					}
				}
			}
			return &tls.Certificate{}, nil // none: the peer decides whether that will do
		},
	}
}

// ReloadTLS reads the certificate, key and CA files again (SIGHUP). Connections
// already up keep what they negotiated; new ones get the new files. On error
// nothing changes.
func (s *Server) ReloadTLS() error {
	s.certs.mu.Lock()
	defer s.certs.mu.Unlock()
	var server *tls.Certificate
	if s.opt.TLSCertFile != "" {
		c, err := tls.LoadX509KeyPair(s.opt.TLSCertFile, s.opt.TLSKeyFile)
		if err != nil {
			return fmt.Errorf("--sip-tls-cert/--sip-tls-key: %w", err)
		}
		server = &c
	}
	var roots *x509.CertPool
	if s.opt.TLSCAFile != "" {
		pem, err := os.ReadFile(s.opt.TLSCAFile)
		if err != nil {
			return fmt.Errorf("--sip-tls-ca: %w", err)
		}
		roots = x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return fmt.Errorf("--sip-tls-ca %s: no PEM certificate in it", s.opt.TLSCAFile)
		}
	}
	clients, err := s.loadClientCerts(s.trunks().all)
	if err != nil {
		return err
	}
	if server != nil {
		s.certs.server.Store(server)
	}
	s.certs.roots.Store(roots)
	s.certs.clients.Store(&clients)
	return nil
}

// addClients publishes the client certificates of a new set of trunks.
func (c *tlsCerts) addClients(m map[int64]*tls.Certificate) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.clients.Store(&m)
}

// loadClientCerts reads the trunks' client certificates.
func (s *Server) loadClientCerts(all []*trunk) (map[int64]*tls.Certificate, error) {
	out := map[int64]*tls.Certificate{}
	var errs []error
	for _, t := range all {
		if t.TLS.ClientCertFile == "" {
			continue
		}
		c, err := tls.LoadX509KeyPair(t.TLS.ClientCertFile, t.TLS.ClientKeyFile)
		if err != nil {
			errs = append(errs, fmt.Errorf("trunk %q client certificate: %w", t.Name, err))
			continue
		}
		out[t.ID] = &c
	}
	return out, errors.Join(errs...)
}

// listenTLS binds the --sip-tls listener.
func (s *Server) listenTLS() error {
	if s.opt.TLSAddr == "" {
		return nil
	}
	if s.certs.server.Load() == nil {
		return errors.New("--sip-tls needs --sip-tls-cert and --sip-tls-key")
	}
	l, err := net.Listen("tcp", s.opt.TLSAddr)
	if err != nil {
		return fmt.Errorf("sip: listen tls %s: %w", s.opt.TLSAddr, err)
	}
	s.tlsPort = l.Addr().(*net.TCPAddr).Port
	// The guard on the raw socket (accept errors, allow-list, caps), TLS on it, and
	// the SIP framing (flood limit per message, read deadlines) on the plaintext.
	s.tlsListeners = append(s.tlsListeners, framedListener{Listener: tls.NewListener(s.guardRawListener(l), s.serverTLSConfig()), s: s})
	return nil
}
