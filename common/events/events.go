// Package events defines the subjects and payloads that the services exchange
// (JSON, camelCase, as in the original app), and the typed publisher and
// listener over either transport: NATS Streaming (stan.go, the default) or
// NATS JetStream (nats.go), chosen by Config.Bus (EVENT_BUS).
//
// Every replicated record carries a version: a consumer applies version n+1
// only on top of n, acknowledges duplicates and never applies out of order
// (see package inorder).
package events

import "time"

// Subject names a stream of events.
type Subject string

const (
	SubjectTicketCreated      Subject = "ticket:created"
	SubjectTicketUpdated      Subject = "ticket:updated"
	SubjectOrderCreated       Subject = "order:created"
	SubjectOrderCancelled     Subject = "order:cancelled"
	SubjectExpirationComplete Subject = "expiration:complete"
	SubjectPaymentCreated     Subject = "payment:created"
	// SubjectDeadLetter receives messages that failed too often or do not
	// decode, wrapped in a DeadLetter, so one poison message cannot block a
	// queue group forever.
	SubjectDeadLetter Subject = "dead-letter"
)

// Subjects lists every subject: JetStream's stream holds exactly these
// (with the SubjectPrefix); a publish on another subject fails there.
var Subjects = []Subject{
	SubjectTicketCreated, SubjectTicketUpdated, SubjectOrderCreated, SubjectOrderCancelled,
	SubjectExpirationComplete, SubjectPaymentCreated, SubjectDeadLetter,
}

// Event is a payload that knows its subject.
type Event interface{ Subject() Subject }

// OrderStatus is the life cycle of an order.
type OrderStatus string

const (
	// OrderCreated: the order is placed and holds its ticket, not yet paid.
	OrderCreated OrderStatus = "created"
	// OrderCancelled: the ticket is free again (user cancelled, or it expired).
	OrderCancelled OrderStatus = "cancelled"
	// OrderAwaitingPayment: kept for compatibility with the original app.
	OrderAwaitingPayment OrderStatus = "awaiting:payment"
	// OrderComplete: paid; the reservation is final.
	OrderComplete OrderStatus = "complete"
)

// TicketCreated is published by the tickets service.
type TicketCreated struct {
	ID      string  `json:"id"`
	Version int64   `json:"version"`
	Title   string  `json:"title"`
	Price   float64 `json:"price"`
	UserID  string  `json:"userId"`
	OrderID string  `json:"orderId,omitempty"`
}

// TicketUpdated is published by the tickets service on every change of a
// ticket (edit, reserved, freed), with the version after the change.
type TicketUpdated struct {
	ID      string  `json:"id"`
	Version int64   `json:"version"`
	Title   string  `json:"title"`
	Price   float64 `json:"price"`
	UserID  string  `json:"userId"`
	OrderID string  `json:"orderId,omitempty"`
}

// OrderTicket is the part of a ticket an order event carries.
type OrderTicket struct {
	ID    string  `json:"id"`
	Price float64 `json:"price,omitempty"`
}

// OrderCreatedEvent (order:created) is published by the orders service when
// a ticket is reserved. OrderCreated is the order status of that name.
type OrderCreatedEvent struct {
	ID        string      `json:"id"`
	Version   int64       `json:"version"`
	Status    OrderStatus `json:"status"`
	UserID    string      `json:"userId"`
	ExpiresAt time.Time   `json:"expiresAt"`
	Ticket    OrderTicket `json:"ticket"`
}

// OrderCancelledEvent (order:cancelled) is published by the orders service
// when an order is cancelled by its user or expires.
type OrderCancelledEvent struct {
	ID      string      `json:"id"`
	Version int64       `json:"version"`
	Ticket  OrderTicket `json:"ticket"`
}

// ExpirationComplete is published by the expiration service when an order's
// reservation window has passed.
type ExpirationComplete struct {
	OrderID string `json:"orderId"`
}

// PaymentCreated is published by the payments service once an order is paid.
type PaymentCreated struct {
	ID       string `json:"id"`
	OrderID  string `json:"orderId"`
	StripeID string `json:"stripeId"`
}

// DeadLetter wraps a message that a listener gave up on.
type DeadLetter struct {
	OriginalSubject string    `json:"subject"`
	QueueGroup      string    `json:"queueGroup"`
	Sequence        uint64    `json:"sequence"`
	Attempts        int       `json:"attempts"`
	Reason          string    `json:"reason"`
	Data            []byte    `json:"data"`
	FailedAt        time.Time `json:"failedAt"`
}

func (TicketCreated) Subject() Subject       { return SubjectTicketCreated }
func (TicketUpdated) Subject() Subject       { return SubjectTicketUpdated }
func (OrderCreatedEvent) Subject() Subject   { return SubjectOrderCreated }
func (OrderCancelledEvent) Subject() Subject { return SubjectOrderCancelled }
func (ExpirationComplete) Subject() Subject  { return SubjectExpirationComplete }
func (PaymentCreated) Subject() Subject      { return SubjectPaymentCreated }
func (DeadLetter) Subject() Subject          { return SubjectDeadLetter }
