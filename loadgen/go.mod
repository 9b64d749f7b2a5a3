module github.com/ticketing-go/ticketing/loadgen

go 1.24
