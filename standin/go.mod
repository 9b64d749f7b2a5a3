module github.com/ticketing-go/ticketing/standin

go 1.24
