// Package contract holds Realtime API messages to OpenAI's published event
// schemas (realtime.schema.json beside this file, transcribed from OpenAI's
// API reference and the types openai-python generates from OpenAI's OpenAPI
// document; every object that lists its properties allows no others, so a
// field nobody published fails). The simulator checks the client events it
// receives with it, and tests check every message both sides send.
package contract

import (
	"bytes"
	_ "embed"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

//go:embed realtime.schema.json
var spec []byte

// Contract validates messages by direction and type.
type Contract struct {
	client, server map[string]*jsonschema.Schema
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
	var doc struct {
		Client map[string]json.RawMessage `json:"client"`
		Server map[string]json.RawMessage `json:"server"`
	}
	if err := json.Unmarshal(spec, &doc); err != nil {
		return nil, fmt.Errorf("contract: %w", err)
	}
	root, err := jsonschema.UnmarshalJSON(bytes.NewReader(spec))
	if err != nil {
		return nil, err
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat()
	c.RegisterFormat(&jsonschema.Format{Name: "base64", Validate: func(v any) error {
		s, ok := v.(string)
		if !ok {
			return nil
		}
		_, err := base64.StdEncoding.DecodeString(s)
		return err
	}})
	if err := c.AddResource("realtime.json", root); err != nil {
		return nil, err
	}
	out := &Contract{client: map[string]*jsonschema.Schema{}, server: map[string]*jsonschema.Schema{}}
	for dir, names := range map[string]map[string]json.RawMessage{"client": doc.Client, "server": doc.Server} {
		dst := out.client
		if dir == "server" {
			dst = out.server
		}
		for typ := range names {
			sch, err := c.Compile("realtime.json#/" + dir + "/" + escape(typ))
			if err != nil {
				return nil, fmt.Errorf("contract: %s %s: %w", dir, typ, err)
			}
			dst[typ] = sch
		}
	}
	return out, nil
}

// escape is a JSON pointer token (RFC 6901).
func escape(s string) string {
	var b bytes.Buffer
	for _, r := range s {
		switch r {
		case '~':
			b.WriteString("~0")
		case '/':
			b.WriteString("~1")
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// Client checks an event a client (the gateway) sends.
func (c *Contract) Client(msg []byte) error { return check(c.client, "client", msg) }

// Server checks an event the server (the simulator) sends.
func (c *Contract) Server(msg []byte) error { return check(c.server, "server", msg) }

// Known reports whether typ is a client event the contract has.
func (c *Contract) Known(typ string) bool { _, ok := c.client[typ]; return ok }

func check(by map[string]*jsonschema.Schema, who string, msg []byte) error {
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(msg))
	if err != nil {
		return fmt.Errorf("%s event is not JSON: %w: %.200s", who, err, msg)
	}
	m, ok := v.(map[string]any)
	if !ok {
		return fmt.Errorf("%s event is not an object: %.200s", who, msg)
	}
	typ, _ := m["type"].(string)
	sch, ok := by[typ]
	if !ok {
		return fmt.Errorf("no %s event of type %q: %.200s", who, typ, msg)
	}
	if err := sch.Validate(v); err != nil {
		return fmt.Errorf("%s event %q breaks the schema: %w\n%.300s", who, typ, err, msg)
	}
	return nil
}
