package apispec

import (
	"bytes"
	"encoding/json"
)

// decodeJSON decodes into the generic values schema validation expects
// (float64 numbers, map[string]any objects).
func decodeJSON(b []byte) (any, error) {
	var v any
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	return v, nil
}
