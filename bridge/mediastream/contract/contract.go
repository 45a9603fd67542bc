// Package contract holds Media Streams messages to the shapes Twilio's
// reference publishes (mediastream.schema.json beside this file: what Twilio —
// here the gateway — sends, and what a bot sends back, plus the gateway's
// documented additions; no object allows fields beyond them). Tests check
// every message both sides send.
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

//go:embed mediastream.schema.json
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
		Client map[string]json.RawMessage `json:"twilio"`
		Server map[string]json.RawMessage `json:"bot"`
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
	if err := c.AddResource("mediastream.json", root); err != nil {
		return nil, err
	}
	out := &Contract{client: map[string]*jsonschema.Schema{}, server: map[string]*jsonschema.Schema{}}
	for dir, names := range map[string]map[string]json.RawMessage{"twilio": doc.Client, "bot": doc.Server} {
		dst := out.client
		if dir == "bot" {
			dst = out.server
		}
		for typ := range names {
			sch, err := c.Compile("mediastream.json#/" + dir + "/" + escape(typ))
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

// Gateway checks a message the gateway sends (as Twilio would).
func (c *Contract) Gateway(msg []byte) error { return check(c.client, "gateway", msg) }

// Bot checks a message a bot sends.
func (c *Contract) Bot(msg []byte) error { return check(c.server, "bot", msg) }

func check(by map[string]*jsonschema.Schema, who string, msg []byte) error {
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(msg))
	if err != nil {
		return fmt.Errorf("%s event is not JSON: %w: %.200s", who, err, msg)
	}
	m, ok := v.(map[string]any)
	if !ok {
		return fmt.Errorf("%s event is not an object: %.200s", who, msg)
	}
	typ, _ := m["event"].(string)
	sch, ok := by[typ]
	if !ok {
		return fmt.Errorf("no %s message with event %q: %.200s", who, typ, msg)
	}
	if err := sch.Validate(v); err != nil {
		return fmt.Errorf("%s message %q breaks the schema: %w\n%.300s", who, typ, err, msg)
	}
	return nil
}
