package control

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"unicode/utf8"
)

// form is a decoded JSON object body, read field by field so each error names its field.
type form struct {
	m map[string]json.RawMessage
}

// readForm reads the request body as one JSON object with only the allowed fields.
// An empty body is an empty object.
func readForm(w http.ResponseWriter, r *http.Request, allowed ...string) (*form, error) {
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, errf(http.StatusRequestEntityTooLarge, typeTooLarge, "request body is larger than 1 MiB")
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return nil, errf(http.StatusRequestTimeout, typeTimeout, "the request body did not arrive in time")
		}
		return nil, invalid("cannot read request body: %v", err)
	}
	f := &form{m: map[string]json.RawMessage{}}
	if len(bytes.TrimSpace(raw)) == 0 {
		return f, nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(&f.m); err != nil {
		var ute *json.UnmarshalTypeError
		if errors.As(err, &ute) {
			return nil, invalid("request body must be a JSON object")
		}
		return nil, invalid("request body is not valid JSON: %v", err)
	}
	if f.m == nil {
		return nil, invalid("request body must be a JSON object")
	}
	if dec.More() {
		return nil, invalid("request body has data after the JSON object")
	}
	for k := range f.m {
		if !slices.Contains(allowed, k) {
			return nil, invalid("%s: unknown field (allowed: %s)", k, strings.Join(allowed, ", "))
		}
	}
	return f, nil
}

// present says whether the field is there and not null.
func (f *form) present(k string) bool {
	v, ok := f.m[k]
	return ok && string(v) != "null"
}

// isNull says whether the field was sent as null.
func (f *form) isNull(k string) bool {
	v, ok := f.m[k]
	return ok && string(v) == "null"
}

func (f *form) required(k string) error {
	if !f.present(k) {
		return invalid("%s: field required", k)
	}
	return nil
}

// str reads a string field; nil when absent or null. Strings are trimmed; maxLen counts characters.
func (f *form) str(k string, required bool, minLen, maxLen int) (*string, error) {
	if !f.present(k) {
		if required {
			return nil, invalid("%s: field required", k)
		}
		return nil, nil
	}
	var s string
	if err := json.Unmarshal(f.m[k], &s); err != nil {
		return nil, invalid("%s: must be a string", k)
	}
	s = strings.TrimSpace(s)
	n := utf8.RuneCountInString(s)
	if n < minLen {
		if minLen == 1 {
			return nil, invalid("%s: must not be empty", k)
		}
		return nil, invalid("%s: must be at least %d characters", k, minLen)
	}
	if maxLen > 0 && n > maxLen {
		return nil, invalid("%s: must be at most %d characters (got %d)", k, maxLen, n)
	}
	return &s, nil
}

// integer reads a whole-number field.
func (f *form) integer(k string, required bool) (*int64, error) {
	if !f.present(k) {
		if required {
			return nil, invalid("%s: field required", k)
		}
		return nil, nil
	}
	// Decode into any: decoding into json.Number directly would also accept "7", a string.
	var v any
	d := json.NewDecoder(bytes.NewReader(f.m[k]))
	d.UseNumber()
	if err := d.Decode(&v); err != nil {
		return nil, invalid("%s: must be an integer", k)
	}
	n, isNum := v.(json.Number)
	if !isNum {
		return nil, invalid("%s: must be an integer", k)
	}
	i, err := n.Int64()
	if err != nil {
		return nil, invalid("%s: must be an integer", k)
	}
	return &i, nil
}

// boolean reads a true/false field.
func (f *form) boolean(k string) (*bool, error) {
	if !f.present(k) {
		return nil, nil
	}
	var b bool
	if err := json.Unmarshal(f.m[k], &b); err != nil {
		return nil, invalid("%s: must be true or false", k)
	}
	return &b, nil
}

// object reads a JSON object field.
func (f *form) object(k string) (map[string]any, error) {
	if !f.present(k) {
		return nil, nil
	}
	var m map[string]any
	if err := json.Unmarshal(f.m[k], &m); err != nil || m == nil {
		return nil, invalid("%s: must be an object", k)
	}
	return m, nil
}

// strings reads an array of strings.
func (f *form) strings(k string, required bool) ([]string, error) {
	if !f.present(k) {
		if required {
			return nil, invalid("%s: field required", k)
		}
		return nil, nil
	}
	var l []string
	if err := json.Unmarshal(f.m[k], &l); err != nil {
		return nil, invalid("%s: must be an array of strings", k)
	}
	return l, nil
}
