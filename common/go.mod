module github.com/ticketing-go/ticketing/common

go 1.24

require (
	github.com/go-chi/chi/v5 v5.5.0
	github.com/golang-jwt/jwt/v5 v5.3.1
)
