package metrics

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/sockreap/sockreap/internal/reap"
)

// The state file's body: one record per line, fields separated by spaces,
// strings quoted (strconv.Quote). A hand-written format because every
// hook is a new process, and encoding/json's first decode there costs
// about 150 µs of reflection (measured) for a few dozen numbers.
//
//	c MAP "KEY" N                      a counter (MAP: drains, hook_runs, hook_failures, sockets)
//	h MAP "KEY" SUM COUNT B0 ... Bn    a histogram (drain_duration, stage_duration)
//	n NAME N                           a number (gc_releases, pins, pins_stale, dying_lower, dying_upper, gc_last_run)
//	k "KERNEL" DESTROY TCP UDP TIME_WAIT LISTEN ORPHAN_SAFE   the kernel probe (0 or 1 each)
//	r "DIR"                            a running-marker directory
const stateMagic = "sockreap-state 1"

func (r *Recorder) counterMaps() map[string]map[string]uint64 {
	return map[string]map[string]uint64{"drains": r.Drains, "hook_runs": r.HookRuns, "hook_failures": r.HookFailures, "sockets": r.Sockets}
}

func (r *Recorder) histMaps() map[string]map[string]*Histogram {
	return map[string]map[string]*Histogram{"drain_duration": r.DrainDuration, "stage_duration": r.StageDuration}
}

func (r *Recorder) numbers() map[string]**int {
	return map[string]**int{"pins": &r.Pins, "pins_stale": &r.PinsStale, "dying_lower": &r.DyingNetnsLower, "dying_upper": &r.DyingNetnsUpper}
}

// encodeState renders the counters, header (the generation) included.
func encodeState(r *Recorder) []byte {
	r.init()
	var b bytes.Buffer
	fmt.Fprintf(&b, "%020d\n%s\n", r.Gen, stateMagic)
	for _, name := range []string{"drains", "hook_runs", "hook_failures", "sockets"} {
		m := r.counterMaps()[name]
		for _, k := range slices.Sorted(maps.Keys(m)) {
			fmt.Fprintf(&b, "c %s %s %d\n", name, strconv.Quote(k), m[k])
		}
	}
	for _, name := range []string{"drain_duration", "stage_duration"} {
		m := r.histMaps()[name]
		for _, k := range slices.Sorted(maps.Keys(m)) {
			h := m[k]
			fmt.Fprintf(&b, "h %s %s %s %d", name, strconv.Quote(k), strconv.FormatFloat(h.Sum, 'g', -1, 64), h.Count)
			for _, c := range h.Counts {
				fmt.Fprintf(&b, " %d", c)
			}
			b.WriteByte('\n')
		}
	}
	fmt.Fprintf(&b, "n gc_releases %d\nn gc_last_run %d\n", r.GCReleases, r.GCLastRun)
	for _, name := range []string{"pins", "pins_stale", "dying_lower", "dying_upper"} {
		if v := *r.numbers()[name]; v != nil {
			fmt.Fprintf(&b, "n %s %d\n", name, *v)
		}
	}
	if k := r.Kernel; k != nil {
		bit := func(v bool) int {
			if v {
				return 1
			}
			return 0
		}
		fmt.Fprintf(&b, "k %s %d %d %d %d %d %d\n", strconv.Quote(k.Kernel), bit(k.Destroy), bit(k.TCP), bit(k.UDP), bit(k.TimeWait), bit(k.Listen), bit(k.OrphanSafe))
	}
	for _, d := range r.RunDirs {
		fmt.Fprintf(&b, "r %s\n", strconv.Quote(d))
	}
	return b.Bytes()
}

var errBadState = errors.New("malformed metrics state")

// decodeState parses what encodeState wrote; empty is a new recorder.
func decodeState(b []byte) (*Recorder, error) {
	r := NewRecorder()
	if len(b) == 0 {
		return r, nil
	}
	if len(b) < 21 || b[20] != '\n' {
		return nil, errBadState
	}
	gen, err := strconv.ParseUint(string(b[:20]), 10, 64)
	if err != nil {
		return nil, errBadState
	}
	r.Gen = gen
	sc := bufio.NewScanner(bytes.NewReader(b[21:]))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	if !sc.Scan() || sc.Text() != stateMagic {
		return nil, errBadState
	}
	for sc.Scan() {
		if err := r.decodeLine(sc.Text()); err != nil {
			return nil, fmt.Errorf("%w: %q: %v", errBadState, sc.Text(), err)
		}
	}
	return r, sc.Err()
}

// fields splits a record line; a quoted field may hold spaces.
func fields(line string) ([]string, error) {
	var out []string
	for line = strings.TrimLeft(line, " "); line != ""; line = strings.TrimLeft(line, " ") {
		if line[0] == '"' {
			q, err := strconv.QuotedPrefix(line)
			if err != nil {
				return nil, err
			}
			s, _ := strconv.Unquote(q)
			out = append(out, s)
			line = line[len(q):]
			continue
		}
		i := strings.IndexByte(line, ' ')
		if i < 0 {
			i = len(line)
		}
		out = append(out, line[:i])
		line = line[i:]
	}
	return out, nil
}

func (r *Recorder) decodeLine(line string) error {
	f, err := fields(line)
	if err != nil || len(f) < 2 {
		return errors.New("too few fields")
	}
	u := func(s string) (uint64, error) { return strconv.ParseUint(s, 10, 64) }
	switch f[0] {
	case "c":
		m, ok := r.counterMaps()[f[1]]
		if !ok || len(f) != 4 {
			return errors.New("bad counter")
		}
		n, err := u(f[3])
		if err != nil {
			return err
		}
		m[f[2]] = n
	case "h":
		m, ok := r.histMaps()[f[1]]
		if !ok || len(f) != 5+len(Buckets)+1 {
			return errors.New("bad histogram")
		}
		h := &Histogram{Counts: make([]uint64, len(Buckets)+1)}
		if h.Sum, err = strconv.ParseFloat(f[3], 64); err != nil {
			return err
		}
		if h.Count, err = u(f[4]); err != nil {
			return err
		}
		for i := range h.Counts {
			if h.Counts[i], err = u(f[5+i]); err != nil {
				return err
			}
		}
		m[f[2]] = h
	case "n":
		if len(f) != 3 {
			return errors.New("bad number")
		}
		n, err := strconv.ParseInt(f[2], 10, 64)
		if err != nil {
			return err
		}
		switch f[1] {
		case "gc_releases":
			r.GCReleases = uint64(n)
		case "gc_last_run":
			r.GCLastRun = n
		default:
			p, ok := r.numbers()[f[1]]
			if !ok {
				return errors.New("unknown number")
			}
			*p = Int(int(n))
		}
	case "k":
		if len(f) != 8 {
			return errors.New("bad kernel")
		}
		k := &reap.Capabilities{Kernel: f[1]}
		for i, p := range []*bool{&k.Destroy, &k.TCP, &k.UDP, &k.TimeWait, &k.Listen, &k.OrphanSafe} {
			*p = f[2+i] == "1"
		}
		r.Kernel = k
	case "r":
		r.RunDirs = append(r.RunDirs, f[1])
	default:
		return errors.New("unknown record")
	}
	return nil
}
