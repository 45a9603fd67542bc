// Package contract holds Realtime API messages to OpenAI's published event
// schemas (realtime.schema.json beside this file, transcribed from OpenAI's
// API reference and the types openai-python generates from OpenAI's OpenAPI
// document; every object that lists its properties allows no others, so a
// field nobody published fails). The simulator checks the client events it
// receives with it, and tests check every message both sides send.
package contract

import (
	_ "embed"
	"sync"

	"github.com/cxco/gateway/bridge/internal/schemacheck"
)

//go:embed realtime.schema.json
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
	by, err := schemacheck.Compile(spec, "realtime.json", "client", "server")
	if err != nil {
		return nil, err
	}
	return &Contract{client: by["client"], server: by["server"]}, nil
}

// Client checks an event a client (the gateway) sends.
func (c *Contract) Client(msg []byte) error { return c.client.Check("client", "event", "type", msg) }

// Server checks an event the server (the simulator) sends.
func (c *Contract) Server(msg []byte) error { return c.server.Check("server", "event", "type", msg) }

// Known reports whether typ is a client event the contract has.
func (c *Contract) Known(typ string) bool { _, ok := c.client[typ]; return ok }
