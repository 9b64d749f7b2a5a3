package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"
)

// clockTicks is the unit of the CPU times in /proc/<pid>/stat (USER_HZ,
// sysconf(_SC_CLK_TCK)): 100 on every Linux the bench runs on; the
// kernel's ABI fixes it regardless of the kernel's own HZ.
const clockTicks = 100

// ProcStat is what the bench reads of /proc/<pid>/stat: the parent and the
// CPU times in clock ticks (utime and stime: the process's own; cutime and
// cstime: those of its children it waited for, which is where the CPU of
// PostgreSQL backends that exited ends up in the postmaster).
type ProcStat struct {
	PID, PPID                    int
	Comm                         string
	UTime, STime, CUTime, CSTime uint64
}

// Own is the process's own CPU time in ticks.
func (s ProcStat) Own() uint64 { return s.UTime + s.STime }

// WithChildren is Own plus the CPU time of the children it waited for.
func (s ProcStat) WithChildren() uint64 { return s.Own() + s.CUTime + s.CSTime }

// ParseStat parses the contents of /proc/<pid>/stat. The command name is
// in parentheses and may itself hold spaces and parentheses, so the
// fields are counted from the last ')'.
func ParseStat(b []byte) (ProcStat, error) {
	var s ProcStat
	open, end := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
	if open < 0 || end < open {
		return s, errors.New("stat: no (comm)")
	}
	pid, err := strconv.Atoi(string(bytes.TrimSpace(b[:open])))
	if err != nil {
		return s, fmt.Errorf("stat: pid: %w", err)
	}
	s.PID, s.Comm = pid, string(b[open+1:end])
	// f[0] is field 3 (state) of proc(5): field n is f[n-3].
	f := bytes.Fields(b[end+1:])
	if len(f) < 15 {
		return s, fmt.Errorf("stat: %d fields after comm, want at least 15", len(f))
	}
	num := func(n int) (uint64, error) { return strconv.ParseUint(string(f[n-3]), 10, 64) }
	ppid, err := num(4)
	if err != nil {
		return s, fmt.Errorf("stat: ppid: %w", err)
	}
	s.PPID = int(ppid)
	for _, x := range []struct {
		n int
		p *uint64
	}{{14, &s.UTime}, {15, &s.STime}, {16, &s.CUTime}, {17, &s.CSTime}} {
		if *x.p, err = num(x.n); err != nil {
			return s, fmt.Errorf("stat: field %d: %w", x.n, err)
		}
	}
	return s, nil
}

func readStat(pid int) (ProcStat, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ProcStat{}, err
	}
	return ParseStat(b)
}

// CPUGroup is a process whose CPU the bench counts, under a name for the
// report. With Tree, it is a PostgreSQL postmaster: its count is its own
// time, its waited-for children's (backends that exited), and the time of
// its live children (the backends), so that connections opened and closed
// during a run are counted too.
type CPUGroup struct {
	Name string
	PID  int
	Tree bool
	// Client marks the load generator: reported, not counted in the
	// system's total.
	Client bool
}

// CPUSample is the cumulative CPU time of every group at one moment, in
// ticks, in the order of the groups.
type CPUSample struct {
	At    time.Time
	Ticks []uint64
}

// CPUWatch reads the CPU time of the bench's process groups. Not safe for
// concurrent use.
type CPUWatch struct {
	Groups []CPUGroup
	last   []uint64
	// Missing names the groups whose process could not be read at some
	// sample (it exited): their time stays at the last value read.
	Missing map[string]bool
}

// Sample reads every group now.
func (w *CPUWatch) Sample() CPUSample {
	s := CPUSample{At: time.Now(), Ticks: make([]uint64, len(w.Groups))}
	if len(w.last) != len(w.Groups) {
		w.last = make([]uint64, len(w.Groups))
	}
	defer copy(w.last, s.Ticks)
	var all []ProcStat // read once, when some group is a tree
	for i, g := range w.Groups {
		st, err := readStat(g.PID)
		if err != nil {
			s.Ticks[i] = w.last[i]
			if w.Missing == nil {
				w.Missing = map[string]bool{}
			}
			w.Missing[g.Name] = true
			continue
		}
		if !g.Tree {
			s.Ticks[i] = st.Own()
			continue
		}
		if all == nil {
			all = allStats()
		}
		s.Ticks[i] = TreeTicks(st, all)
	}
	return s
}

// TreeTicks is the CPU of a postmaster (root) and its children: root's own
// and waited-for children's time plus every live child's time with its own
// waited-for children. A child that exits moves its time from the live sum
// into root's cutime/cstime when root reaps it, so the sum does not drop.
func TreeTicks(root ProcStat, all []ProcStat) uint64 {
	t := root.WithChildren()
	for _, p := range all {
		if p.PPID == root.PID && p.PID != root.PID {
			t += p.WithChildren()
		}
	}
	return t
}

// allStats reads /proc/*/stat of every process it can.
func allStats() []ProcStat {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return []ProcStat{}
	}
	out := make([]ProcStat, 0, len(ents))
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, err := readStat(pid); err == nil {
			out = append(out, st)
		}
	}
	return out
}

// SystemTicks is the sum of a sample over the groups that are not the
// client.
func (w *CPUWatch) SystemTicks(s CPUSample) uint64 {
	var t uint64
	for i, g := range w.Groups {
		if !g.Client && i < len(s.Ticks) {
			t += s.Ticks[i]
		}
	}
	return t
}

// QuietStart finds, in samples of the system's cumulative CPU (ticks, in
// time order), whether the last span of at least window used less than
// maxCores of CPU on average (0.05: 5 % of one core), and if so the index
// of the sample that starts that span: the system has been idle since
// then. The span starts at the latest sample that is at least window
// before the last one; fewer samples than that span: not quiet yet.
func QuietStart(at []time.Time, ticks []uint64, window time.Duration, maxCores float64) (int, bool) {
	n := len(at)
	if n < 2 || len(ticks) != n {
		return 0, false
	}
	last := n - 1
	for i := last - 1; i >= 0; i-- {
		span := at[last].Sub(at[i])
		if span < window {
			continue
		}
		if ticks[last] < ticks[i] {
			return i, false // not cumulative: cannot tell
		}
		used := float64(ticks[last]-ticks[i]) / clockTicks // CPU seconds
		return i, used < maxCores*span.Seconds()
	}
	return 0, false
}

// PerRequest is CPU ticks over requests, in milliseconds per request (0
// without requests).
func PerRequest(ticks uint64, requests int) float64 {
	if requests <= 0 {
		return 0
	}
	return float64(ticks) * 1000 / clockTicks / float64(requests)
}
