package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// result is one measured drain of one freshly filled namespace.
type result struct {
	Method    string
	N         int // sockets in the namespace before (ss count)
	Wall      time.Duration
	User, Sys time.Duration
	MaxRSS    int64 // bytes; 0 when not meaningful
	Left      stateCount
	Report    *hookReport // sockreap's own account, when it ran
}

// hookReport is the part of `sockreap-hook drain --json` the bench reads.
type hookReport struct {
	Found       int   `json:"found"`
	Destroyed   int   `json:"destroyed"`
	AlreadyGone int   `json:"already_gone"`
	Remaining   int   `json:"remaining"`
	Passes      int   `json:"passes"`
	DurationUS  int64 `json:"duration_us"`
	Left        []struct {
		Protocol, State, Owner string
		Count                  int
	} `json:"left"`
}

// method drains a filled namespace in one way and measures it.
type method struct {
	Name string
	Desc string
	run  func(c *config, b *benchNS) (*result, error)
}

var methods = []method{
	{"sockreap", "sockreap-hook drain --json --force", drainSockreap(false)},
	{"ss-K", "ip netns exec NS ss -K -t -a (kills IPv4 and IPv6, every state)", drainSSKill},
	{"exit", "no drainer: SIGKILL the socket owners, the kernel closes at exit", drainExit},
	{"ss-dump", "ip netns exec NS ss -t -a (list only: the dump cost)", dumpSS},
	{"sockreap-dry", "sockreap-hook drain --dry-run (dump and classify only)", drainSockreap(true)},
}

func methodByName(name string) (method, bool) {
	for _, m := range methods {
		if strings.EqualFold(m.Name, name) {
			return m, true
		}
	}
	return method{}, false
}

func drainSockreap(dry bool) func(*config, *benchNS) (*result, error) {
	return func(c *config, b *benchNS) (*result, error) {
		// --metrics-dir "": the node's node_exporter directory is not the bench's.
		args := []string{"drain", "--netns", b.Path, "--json", "--force", "--timeout", c.timeout.String(), "--metrics-dir="}
		if dry {
			args = append(args, "--dry-run")
		}
		var out bytes.Buffer
		r, err := measure(c.hook, args, &out, 0, 1)
		if err != nil {
			return nil, err
		}
		var rep hookReport
		if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
			return nil, fmt.Errorf("sockreap-hook drain --json printed no report (%v): %q", err, trim(out.String()))
		}
		r.Report = &rep
		return r, nil
	}
}

func drainSSKill(c *config, b *benchNS) (*result, error) {
	// Without -4/-6 ss dumps both families; -a selects every state
	// (listeners, TIME_WAIT, SYN-RECV included). Its per-socket output goes
	// to /dev/null but is still formatted: that is part of its cost.
	return measure("ip", []string{"netns", "exec", b.Name, "ss", "-K", "-t", "-a"}, nil, 0)
}

func dumpSS(c *config, b *benchNS) (*result, error) {
	return measure("ip", []string{"netns", "exec", b.Name, "ss", "-t", "-a"}, nil, 0)
}

// drainExit is the baseline without any drainer: what the kernel does when
// the processes holding the sockets die. Its CPU is the fillers' exit CPU
// (their final rusage minus what they spent filling); RSS is not meaningful.
func drainExit(c *config, b *benchNS) (*result, error) {
	r := &result{}
	start := time.Now()
	for _, f := range b.fillers {
		st := f.kill()
		if st == nil {
			return nil, errors.New("a filler was already gone before the exit baseline")
		}
		ru := st.SysUsage().(*syscall.Rusage)
		r.User += tvDur(ru.Utime) - f.fillUser
		r.Sys += tvDur(ru.Stime) - f.fillSys
	}
	r.Wall = time.Since(start)
	return r, nil
}

// measure runs one drainer to completion and takes wall time from start to
// reap, user and sys CPU from its wait4 rusage and peak RSS from GNU time
// (see rssWrapper). ok lists the exit codes that are not failures besides 0.
func measure(name string, args []string, stdout *bytes.Buffer, ok ...int) (*result, error) {
	rssFile := ""
	argv := append([]string{name}, args...)
	if timeBin != "" {
		f, err := os.CreateTemp("", "sockreap-bench-rss-")
		if err != nil {
			return nil, fmt.Errorf("temp file for the RSS: %w", err)
		}
		f.Close()
		rssFile = f.Name()
		defer os.Remove(rssFile)
		argv = append([]string{timeBin, "-f", "%M", "-o", rssFile}, argv...)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if stdout != nil {
		cmd.Stdout = stdout
	}
	start := time.Now()
	err := cmd.Run()
	wall := time.Since(start)
	if err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) || !contains(ok, ee.ExitCode()) {
			return nil, fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, trim(stderr.String()))
		}
	}
	// RUSAGE_BOTH: the drainer's CPU plus GNU time's own (well under 1 ms).
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	r := &result{Wall: wall, User: tvDur(ru.Utime), Sys: tvDur(ru.Stime)}
	if rssFile != "" {
		if r.MaxRSS, err = readRSS(rssFile); err != nil {
			return nil, fmt.Errorf("%s: %w", strings.Join(argv, " "), err)
		}
	}
	return r, nil
}

// timeBin is GNU time, found at start. The drainer's peak RSS cannot come
// from the bench's own wait4: Go starts children with CLONE_VM|CLONE_VFORK,
// so at exec the kernel folds the *bench's* RSS high-water mark into the
// child's ru_maxrss. GNU time forks a fresh copy of its own tiny address
// space instead, so the maxrss it reports is the drainer's own (floor
// about 1 MiB). BusyBox time is no substitute: it reports ru_maxrss as
// pages, 4x too much.
var timeBin string

func readRSS(path string) (int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("read GNU time output: %w", err)
	}
	lines := strings.Fields(strings.TrimSpace(string(b)))
	if len(lines) == 0 {
		return 0, fmt.Errorf("GNU time wrote no peak RSS")
	}
	kib, err := strconv.ParseInt(lines[len(lines)-1], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("GNU time output %q: %w", trim(string(b)), err)
	}
	return kib * 1024, nil
}

func tvDur(tv syscall.Timeval) time.Duration {
	return time.Duration(tv.Sec)*time.Second + time.Duration(tv.Usec)*time.Microsecond
}

func contains(xs []int, x int) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}

func trim(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > 400 {
		s = s[:400] + "..."
	}
	return s
}
