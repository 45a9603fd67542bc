// Package contract holds Media Streams messages to the shapes Twilio's
// reference publishes (mediastream.schema.json beside this file: what Twilio —
// here the gateway — sends, and what a bot sends back, plus the gateway's
// documented additions; no object allows fields beyond them). Tests check
// every message both sides send.
package contract

import (
	_ "embed"
	"sync"

	"github.com/cxco/gateway/bridge/internal/schemacheck"
)

//go:embed mediastream.schema.json
var spec []byte

// Contract validates messages by direction and type.
type Contract struct {
	client, server schemacheck.ByType
}

var (
	once   sync.Once
	loaded *Contract
	lerr   error
)

// Load reads the embedded schemas (once).
func Load() (*Contract, error) {
	once.Do(func() { loaded, lerr = load() })
	return loaded, lerr
}

func load() (*Contract, error) {
	by, err := schemacheck.Compile(spec, "mediastream.json", "twilio", "bot")
	if err != nil {
		return nil, err
	}
	return &Contract{client: by["twilio"], server: by["bot"]}, nil
}

// Gateway checks a message the gateway sends (as Twilio would).
func (c *Contract) Gateway(msg []byte) error {
	return c.client.Check("gateway", "message", "event", msg)
}

// Bot checks a message a bot sends.
func (c *Contract) Bot(msg []byte) error { return c.server.Check("bot", "message", "event", msg) }
