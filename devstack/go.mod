module github.com/ticketing-go/ticketing/devstack

go 1.24
