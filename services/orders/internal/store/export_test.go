package store

// Reads counts the orders Update has read (rather than remembered).
func (s *Store) Reads() int64 { return s.reads.Load() }
