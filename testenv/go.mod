module github.com/ticketing-go/ticketing/testenv

go 1.24
