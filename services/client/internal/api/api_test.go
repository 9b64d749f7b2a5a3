package api

import (
	"encoding/json"
	"io"
	"net/http"
	"testing"
)

// The price goes to the API as typed: a number when it reads as one, the
// text otherwise (so the API's own validation answers), nothing when empty.
func TestTicketInputBody(t *testing.T) {
	v := int64(3)
	for in, want := range map[TicketInput]string{
		{Title: "a", Price: "20"}:              `{"price":20,"title":"a"}`,
		{Title: "a", Price: " 1.50 "}:          `{"price":1.5,"title":"a"}`,
		{Title: "a", Price: "abc"}:             `{"price":"abc","title":"a"}`,
		{Title: "a", Price: ""}:                `{"title":"a"}`,
		{Title: "a", Price: "-5", Version: &v}: `{"price":-5,"title":"a","version":3}`,
	} {
		b, err := json.Marshal(in.body())
		if err != nil || string(b) != want {
			t.Errorf("%+v: %s %v, want %s", in, b, err, want)
		}
	}
}

// decodeError reads the common error body, and still gives a message for a
// body that is not one (a proxy's HTML page); a 503 says when to retry.
func TestDecodeError(t *testing.T) {
	res := func(status int, h http.Header) *http.Response {
		if h == nil {
			h = http.Header{}
		}
		return &http.Response{StatusCode: status, Header: h}
	}
	e := decodeError("tickets", res(502, nil), []byte("<html>bad gateway</html>"))
	if e.Status != 502 || e.General() != "The tickets service answered 502 Bad Gateway." {
		t.Errorf("non-JSON: %+v", e)
	}
	e = decodeError("orders", res(503, http.Header{"Retry-After": {"2"}}), []byte(`{"errors":[{"message":"Service unavailable"}]}`))
	if e.Status != 503 || e.General() != "Service unavailable Please try again in 2 s." {
		t.Errorf("503: %+v", e)
	}
	e = decodeError("tickets", res(400, nil), []byte(`{"errors":[{"message":"Title is required","field":"title"},{"message":"Price must be greater than 0","field":"price"}]}`))
	if f := e.Fields(); f["title"] != "Title is required" || f["price"] != "Price must be greater than 0" || e.General() != "" {
		t.Errorf("fields: %+v", e)
	}
	if AsError(io.EOF).Status != 500 || Status(nil) != 0 {
		t.Error("AsError of a foreign error")
	}
}
