module github.com/ticketing-go/ticketing/loadgen

go 1.26.0

require go.mongodb.org/mongo-driver v1.17.10

require github.com/nats-io/stan.go v0.10.4 // indirect

require (
	github.com/gogo/protobuf v1.3.2 // indirect
	github.com/golang/snappy v0.0.4 // indirect
	github.com/google/go-cmp v0.7.0 // indirect
	github.com/klauspost/compress v1.20.4 // indirect
	github.com/montanaflynn/stats v0.7.1 // indirect
	github.com/nats-io/nats.go v1.55.0 // indirect
	github.com/nats-io/nkeys v0.4.17 // indirect
	github.com/nats-io/nuid v1.0.1 // indirect
	github.com/ticketing-go/ticketing/common v0.0.0
	github.com/xdg-go/pbkdf2 v1.0.0 // indirect
	github.com/xdg-go/scram v1.1.2 // indirect
	github.com/xdg-go/stringprep v1.0.4 // indirect
	github.com/youmark/pkcs8 v0.0.0-20240726163527-a2c0da244d78 // indirect
	golang.org/x/crypto v0.58.0 // indirect
	golang.org/x/sync v0.24.0 // indirect
	golang.org/x/sys v0.50.0 // indirect
	golang.org/x/text v0.43.0 // indirect
)

replace github.com/ticketing-go/ticketing/common => ../common

replace github.com/ticketing-go/ticketing/testenv => ../testenv

replace github.com/ticketing-go/ticketing/standin => ../standin

replace github.com/ticketing-go/ticketing/api => ../api
