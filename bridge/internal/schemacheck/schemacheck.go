// Package schemacheck is what the providers' contract packages share: a JSON
// Schema compiler set up as they all need it (draft 2020-12, formats asserted,
// a base64 format), the compiling of a document that lists one schema per
// message type and direction, and the check of one message against them.
package schemacheck

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// NewCompiler is a draft 2020-12 compiler that asserts formats and knows
// "base64" (standard encoding).
func NewCompiler() *jsonschema.Compiler {
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
	return c
}

// ByType maps a message's type to its schema.
type ByType map[string]*jsonschema.Schema

// Compile reads spec, a document whose top-level keys are the directions
// named in dirs, each an object of one schema per message type, and compiles
// every one of them (resource names the document in $refs).
func Compile(spec []byte, resource string, dirs ...string) (map[string]ByType, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(spec, &top); err != nil {
		return nil, fmt.Errorf("contract: %w", err)
	}
	doc := map[string]map[string]json.RawMessage{}
	for _, dir := range dirs {
		var types map[string]json.RawMessage
		if err := json.Unmarshal(top[dir], &types); err != nil {
			return nil, fmt.Errorf("contract: %s: %w", dir, err)
		}
		doc[dir] = types
	}
	root, err := jsonschema.UnmarshalJSON(bytes.NewReader(spec))
	if err != nil {
		return nil, err
	}
	c := NewCompiler()
	if err := c.AddResource(resource, root); err != nil {
		return nil, err
	}
	out := map[string]ByType{}
	for _, dir := range dirs {
		out[dir] = ByType{}
		for typ := range doc[dir] {
			sch, err := c.Compile(resource + "#/" + dir + "/" + Escape(typ))
			if err != nil {
				return nil, fmt.Errorf("contract: %s %s: %w", dir, typ, err)
			}
			out[dir][typ] = sch
		}
	}
	return out, nil
}

// Escape is a JSON pointer token (RFC 6901).
func Escape(s string) string {
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

// Check validates msg, a JSON object whose typeField names its type, against
// that type's schema in by; who says whose it is and noun what the provider
// calls it (an OpenAI "event", a Media Streams "message") in the error.
func (by ByType) Check(who, noun, typeField string, msg []byte) error {
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(msg))
	if err != nil {
		return fmt.Errorf("%s %s is not JSON: %w: %.200s", who, noun, err, msg)
	}
	m, ok := v.(map[string]any)
	if !ok {
		return fmt.Errorf("%s %s is not an object: %.200s", who, noun, msg)
	}
	typ, _ := m[typeField].(string)
	sch, ok := by[typ]
	if !ok {
		return fmt.Errorf("no %s %s with %s %q: %.200s", who, noun, typeField, typ, msg)
	}
	if err := sch.Validate(v); err != nil {
		return fmt.Errorf("%s %s %q breaks the schema: %w\n%.300s", who, noun, typ, err, msg)
	}
	return nil
}
