// Package contract holds websocket messages to the ElevenLabs Agents AsyncAPI
// contract (agent.asyncapi.yaml beside this file: a copy of elevenlabs/packages,
// packages/types/schemas/agent.asyncapi.yaml, MIT licensed, LICENSE.elevenlabs).
// Tests use it to check every message the gateway sends and every message the
// simulator sends against the provider's own schemas.
//
// Two readings make the schemas usable with a JSON Schema validator, and one
// makes them strict:
//   - `nullable: true` (OpenAPI style) becomes anyOf [the schema, null];
//   - `$ref: "#/components/schemas/X"` points into the document's $defs;
//   - an object schema that lists its properties and says nothing of others gets
//     additionalProperties: false, so a field name that is not in the contract
//     fails (the contract's own open objects, such as parameters, stay open).
//
// `format: base64` is checked. Only tests import this package.
package contract

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"go.yaml.in/yaml/v3"

	"github.com/cxco/gateway/bridge/internal/schemacheck"
)

//go:embed agent.asyncapi.yaml
var spec []byte

// Contract validates messages by direction and type.
type Contract struct {
	client map[string]*jsonschema.Schema // client -> server, by type ("" for user audio)
	server map[string]*jsonschema.Schema // server -> client
}

var (
	once   sync.Once
	loaded *Contract
	lerr   error
)

// Load reads the embedded contract (once).
func Load() (*Contract, error) {
	once.Do(func() { loaded, lerr = load() })
	return loaded, lerr
}

func load() (*Contract, error) {
	var doc map[string]any
	if err := yaml.Unmarshal(spec, &doc); err != nil {
		return nil, fmt.Errorf("contract: %w", err)
	}
	comps, _ := doc["components"].(map[string]any)
	schemas, _ := comps["schemas"].(map[string]any)
	messages, _ := comps["messages"].(map[string]any)
	if len(schemas) == 0 || len(messages) == 0 {
		return nil, errors.New("contract: no components")
	}
	defs := map[string]any{}
	for name, s := range schemas {
		defs[name] = schema(s)
	}
	root := map[string]any{"$schema": "https://json-schema.org/draft/2020-12/schema", "$defs": defs}
	raw, err := json.Marshal(root)
	if err != nil {
		return nil, err
	}
	rootDoc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		return nil, err
	}
	c := schemacheck.NewCompiler()
	if err := c.AddResource("contract.json", rootDoc); err != nil {
		return nil, err
	}
	out := &Contract{client: map[string]*jsonschema.Schema{}, server: map[string]*jsonschema.Schema{}}
	channel, _ := doc["channels"].(map[string]any)["AgentMessages"].(map[string]any)
	for dir, dst := range map[string]map[string]*jsonschema.Schema{"publish": out.server, "subscribe": out.client} {
		op, _ := channel[dir].(map[string]any)
		list, _ := op["message"].(map[string]any)["oneOf"].([]any)
		for _, m := range list {
			ref, _ := m.(map[string]any)["$ref"].(string)
			msg, _ := messages[strings.TrimPrefix(ref, "#/components/messages/")].(map[string]any)
			pref, _ := msg["payload"].(map[string]any)["$ref"].(string)
			name := strings.TrimPrefix(pref, "#/components/schemas/")
			payload, _ := schemas[name].(map[string]any)
			typ := ""
			if props, ok := payload["properties"].(map[string]any); ok {
				if t, ok := props["type"].(map[string]any); ok {
					typ, _ = t["const"].(string)
				}
			}
			sch, err := c.Compile("contract.json#/$defs/" + name)
			if err != nil {
				return nil, fmt.Errorf("contract: %s: %w", name, err)
			}
			dst[typ] = sch
		}
	}
	return out, nil
}

// schema rewrites one schema of the document (see the package comment).
func schema(v any) any {
	m, ok := v.(map[string]any)
	if !ok {
		return v
	}
	out := make(map[string]any, len(m)+1)
	for k, x := range m {
		switch k {
		case "$ref":
			out[k] = strings.Replace(x.(string), "#/components/schemas/", "#/$defs/", 1)
		case "properties":
			props := map[string]any{}
			for name, p := range x.(map[string]any) {
				props[name] = schema(p)
			}
			out[k] = props
		case "items", "not":
			out[k] = schema(x)
		case "additionalProperties":
			if _, isMap := x.(map[string]any); isMap {
				x = schema(x)
			}
			out[k] = x
		case "anyOf", "oneOf", "allOf":
			l := x.([]any)
			n := make([]any, len(l))
			for i, s := range l {
				n[i] = schema(s)
			}
			out[k] = n
		case "nullable", "x-experimental":
		default:
			out[k] = x
		}
	}
	if _, has := out["properties"]; has {
		if _, set := out["additionalProperties"]; !set {
			out["additionalProperties"] = false
		}
	}
	if m["nullable"] == true {
		return map[string]any{"anyOf": []any{out, map[string]any{"type": "null"}}}
	}
	return out
}

// Client checks a message a client (the gateway) sends.
func (c *Contract) Client(msg []byte) error { return c.check(c.client, "client", msg) }

// Server checks a message the server (the simulator) sends.
func (c *Contract) Server(msg []byte) error { return c.check(c.server, "server", msg) }

func (c *Contract) check(by map[string]*jsonschema.Schema, who string, msg []byte) error {
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(msg))
	if err != nil {
		return fmt.Errorf("%s message is not JSON: %w: %.200s", who, err, msg)
	}
	m, ok := v.(map[string]any)
	if !ok {
		return fmt.Errorf("%s message is not an object: %.200s", who, msg)
	}
	typ, _ := m["type"].(string)
	sch, ok := by[typ]
	if !ok {
		return fmt.Errorf("the contract has no %s message of type %q: %.200s", who, typ, msg)
	}
	if err := sch.Validate(v); err != nil {
		return fmt.Errorf("%s message %q breaks the contract: %w\n%.300s", who, typ, err, msg)
	}
	return nil
}

// Checker validates messages on a goroutine of its own, so that a socket that
// hands it every message is not slowed down by validation (tests run under the
// race detector on shared machines); no message is skipped.
type Checker struct {
	c    *Contract
	in   chan checkItem
	done chan struct{}
	errs []error
}

type checkItem struct {
	client bool
	msg    []byte
}

// Checker starts a Checker; Close it once nothing calls Check any more.
func (c *Contract) Checker() *Checker {
	k := &Checker{c: c, in: make(chan checkItem, 1<<14), done: make(chan struct{})}
	go func() {
		defer close(k.done)
		for it := range k.in {
			check := c.Server
			if it.client {
				check = c.Client
			}
			if err := check(it.msg); err != nil {
				k.errs = append(k.errs, err)
			}
		}
	}()
	return k
}

// Check queues a copy of msg (client: a message the client sent).
func (k *Checker) Check(client bool, msg []byte) {
	k.in <- checkItem{client: client, msg: bytes.Clone(msg)}
}

// Close waits until every queued message is checked and returns what broke the contract.
func (k *Checker) Close() []error {
	close(k.in)
	<-k.done
	return k.errs
}
