module github.com/ticketing-go/ticketing/examples/nats-test

go 1.24

require github.com/ticketing-go/ticketing/common v0.0.0

replace github.com/ticketing-go/ticketing/common => ../../common
