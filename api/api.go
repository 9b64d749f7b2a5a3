// Package api holds the OpenAPI 3 document of the public HTTP API
// (openapi.yaml), embedded so that the local stack can serve it and the API
// tests can validate responses against it (package apispec).
package api

import _ "embed"

// OpenAPI is openapi.yaml, the OpenAPI 3 document of the whole public API.
//
//go:embed openapi.yaml
var OpenAPI []byte
