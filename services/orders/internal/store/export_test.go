package store

// Reads counts the orders Update has read (rather than remembered).
func (s *Store) Reads() int64 { return s.records.Reads() }

// TicketReads counts the replica tickets ApplyTicketUpdate has read (before
// or after trying its conditional write).
func (s *Store) TicketReads() int64 { return s.tReads.Load() }
