package httpapi

import (
	"encoding/json"
	"testing"
)

func TestJSONNumber(t *testing.T) {
	tests := []struct {
		raw  string
		want float64
	}{
		{`20`, 20}, {`20.5`, 20.5}, {`-3`, -3}, {`1e2`, 100}, {` 7 `, 7},
		{`"20.50"`, 20.5}, {`" 12 "`, 12}, {`"-1"`, -1},
		{``, 0}, {`null`, 0}, {`true`, 0}, {`"abc"`, 0}, {`"NaN"`, 0}, {`"Inf"`, 0},
		{`"0x10"`, 0}, {`"1_000"`, 0}, {`"+5"`, 0}, {`[1]`, 0}, {`{"a":1}`, 0}, {`1e400`, 0}, {`""`, 0},
	}
	for _, tt := range tests {
		if got := jsonNumber(json.RawMessage(tt.raw)); got != tt.want {
			t.Errorf("jsonNumber(%s) = %v, want %v", tt.raw, got, tt.want)
		}
	}
}

func TestJSONString(t *testing.T) {
	tests := []struct{ raw, want string }{
		{`"concert"`, "concert"}, {`"a\"b"`, `a"b`}, {`""`, ""},
		{``, ""}, {`null`, ""}, {`5`, ""}, {`["x"]`, ""}, {`true`, ""},
	}
	for _, tt := range tests {
		if got := jsonString(json.RawMessage(tt.raw)); got != tt.want {
			t.Errorf("jsonString(%s) = %q, want %q", tt.raw, got, tt.want)
		}
	}
}

func TestExpectedVersion(t *testing.T) {
	tests := []struct {
		raw, ifMatch string
		want         int64 // -1: none expected
		bad          bool
	}{
		{``, ``, -1, false},
		{`null`, ``, -1, false},
		{`3`, ``, 3, false},
		{`0`, ``, 0, false},
		{`3`, `"5"`, 3, false}, // the body wins
		{``, `"5"`, 5, false},
		{``, `W/"5"`, 5, false},
		{``, `5`, 5, false},
		{``, `*`, -1, false},
		{`-1`, ``, 0, true},
		{`1.5`, ``, 0, true},
		{`"3"`, ``, 0, true},
		{``, `"abc"`, 0, true},
		{``, `"-2"`, 0, true},
	}
	for _, tt := range tests {
		v, err := expectedVersion(json.RawMessage(tt.raw), tt.ifMatch)
		switch {
		case tt.bad:
			if err == nil {
				t.Errorf("expectedVersion(%s, %s) = %v, want an error", tt.raw, tt.ifMatch, v)
			}
		case err != nil:
			t.Errorf("expectedVersion(%s, %s): %v", tt.raw, tt.ifMatch, err)
		case tt.want == -1 && v != nil, tt.want != -1 && (v == nil || *v != tt.want):
			t.Errorf("expectedVersion(%s, %s) = %v, want %d", tt.raw, tt.ifMatch, v, tt.want)
		}
	}
}
