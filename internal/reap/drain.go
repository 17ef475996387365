package reap

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"time"

	"github.com/sockreap/sockreap/internal/netns"
	"github.com/sockreap/sockreap/internal/sockdiag"
	"golang.org/x/sys/unix"
)

// batchSize is the number of destroy requests a worker sends at once. Large
// enough that syscalls are a small share of the kernel's work per socket,
// small enough to keep memory constant and all workers busy.
const batchSize = 512

// Drain empties the namespace ns of TCP and UDP sockets within the options'
// budget and reports the outcome. It does not decide whether ns may be
// drained: callers apply netns.CheckTarget and the live-process check first.
//
// Each pass streams a dump of every table into batches that workers destroy
// in parallel; the next pass looks again. The drain ends when a pass finds
// nothing it may destroy, when a pass makes no progress, or at the deadline.
func Drain(ctx context.Context, ns *netns.NS, opts Options) (*Report, error) {
	start := time.Now()
	d := &drainer{opts: opts, rep: &Report{Netns: ns.ID.String(), DryRun: opts.DryRun}}
	timeout := opts.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	d.deadline, _ = ctx.Deadline()
	defer func() { d.rep.DurationUS = time.Since(start).Microseconds() }()

	switch opts.Orphans {
	case OrphansAuto, OrphansDestroy, OrphansSpare, "":
	default:
		return nil, fmt.Errorf("unknown orphan policy %q (auto, destroy or spare)", opts.Orphans)
	}
	d.tables = tables(opts)
	if len(d.tables) == 0 {
		return nil, errors.New("no protocol selected: enable TCP or UDP")
	}

	// Most containers stop with nothing left: the namespace's own socket
	// counters say so without walking the shared hash tables, or probing.
	inUse, err := SocketsInUse(ns)
	if err == nil && inUse == 0 {
		d.rep.Left = []Group{}
		return d.rep, nil
	}

	d.caps = opts.Caps
	if d.caps == nil {
		caps, err := cachedProbe()
		if err != nil {
			d.warn("kernel probe failed (%v): orphans are spared and TIME_WAIT left alone", err)
			caps = &Capabilities{Destroy: true, TCP: true, UDP: true}
		}
		d.caps = caps
	}
	switch opts.Orphans {
	case OrphansDestroy:
		d.destroyOrphans = true
	case OrphansAuto, "":
		d.destroyOrphans = d.caps.OrphanSafe
	}

	workers := opts.Workers
	if workers <= 0 {
		workers = DefaultWorkers()
	}
	// GOMAXPROCS is the process's to set, not a drain's: concurrent
	// drains in one process (the NRI plugin) would race on it. The
	// caller raises it (see GOMAXPROCS; lifecycle.Reaper does before
	// each drain).
	d.ns = ns
	d.maxWorkers = workers
	d.split = inUse >= splitAbove
	defer d.closeConns()
	dumper, err := d.open()
	if err != nil {
		return nil, err
	}
	return d.run(ctx, dumper)
}

// GOMAXPROCS is what a process that drains should run with: a P for
// each destroyer and the dumper, so that a goroutine never waits for the
// scheduler to take a P back from a thread stuck in a long destroy batch.
// Drain does not set it (it is process-wide); a command's main does.
func GOMAXPROCS(workers int) int {
	if workers <= 0 {
		workers = DefaultWorkers()
	}
	return max(runtime.GOMAXPROCS(0), workers+2)
}

var procsMu sync.Mutex // concurrent callers (the NRI plugin's drains) raise it in turn

// RaiseGOMAXPROCS raises GOMAXPROCS to n, never lowering it. A hook starts
// with one P (oci.HookEnv); a drain with sockets to destroy and a scan of
// the host's processes raise it to what they use.
func RaiseGOMAXPROCS(n int) {
	procsMu.Lock()
	defer procsMu.Unlock()
	if runtime.GOMAXPROCS(0) < n {
		runtime.GOMAXPROCS(n)
	}
}

// DefaultWorkers is the number of parallel destroyers when Options.Workers
// is zero: two per CPU, so that a core never idles while one worker is
// between system calls, and at most 8.
func DefaultWorkers() int { return min(2*runtime.NumCPU(), 8) }

// open creates a sock_diag socket inside the namespace.
func (d *drainer) open() (*sockdiag.Conn, error) {
	var c *sockdiag.Conn
	err := d.ns.Do(func() (err error) { c, err = sockdiag.Open(); return err })
	if err != nil {
		return nil, fmt.Errorf("open sock_diag in network namespace %s: %w", d.ns.ID, err)
	}
	d.connMu.Lock()
	d.conns = append(d.conns, c)
	d.connMu.Unlock()
	return c, nil
}

func (d *drainer) closeConns() {
	for _, c := range d.conns {
		c.Close()
	}
}

type drainer struct {
	opts           Options
	caps           *Capabilities
	destroyOrphans bool
	tables         []table
	ns             *netns.NS
	rep            *Report
	shortened      bool // orphan lifetime sysctls written
	maxWorkers     int
	deadline       time.Time
	conns          []*sockdiag.Conn // every socket opened, to close at the end
	workConns      []*sockdiag.Conn // destroyers', opened on demand
	dumpConns      []*sockdiag.Conn // extra dumpers' of a split pass
	split          bool             // many sockets: dump TCP tables in parts, in parallel

	destroyed tally // guarded by mu

	mu     sync.Mutex // guards rep counters updated by workers
	connMu sync.Mutex // guards conns: dumpers start workers while the pass opens dumpers
}

type table struct{ family, protocol uint8 }

func tables(o Options) []table {
	var ts []table
	if o.TCP == nil || *o.TCP {
		ts = append(ts, table{unix.AF_INET, unix.IPPROTO_TCP}, table{unix.AF_INET6, unix.IPPROTO_TCP})
	}
	if o.UDP == nil || *o.UDP {
		ts = append(ts, table{unix.AF_INET, unix.IPPROTO_UDP}, table{unix.AF_INET6, unix.IPPROTO_UDP})
	}
	return ts
}

func (d *drainer) warn(format string, a ...any) {
	d.rep.Warnings = append(d.rep.Warnings, fmt.Sprintf(format, a...))
}

// pass is what one dump-and-destroy round saw and did.
type pass struct {
	seen, attempted int
	found           tally // every socket seen, by class
	destroyed, gone int
	kept            keptSet
	interrupted     bool
}

func (d *drainer) run(ctx context.Context, dumper *sockdiag.Conn) (*Report, error) {
	var last *pass
	prevSeen := -1
	for {
		p, err := d.pass(ctx, dumper)
		d.rep.Passes++
		if d.rep.Passes == 1 {
			d.rep.Found = p.seen
			d.rep.FoundBy = p.found.groups()
			d.split = false // what a later pass finds is little
		}
		last = p
		if err != nil {
			if ctx.Err() == nil {
				return d.rep, err
			}
			d.rep.TimedOut = true
			break
		}
		if d.opts.DryRun {
			break
		}
		// A destroy that succeeds can leave the socket in place (a bound
		// socket whose descriptor a process or the kernel still holds), so
		// progress means fewer sockets than in the pass before.
		progress := p.destroyed+p.gone > 0 && (prevSeen < 0 || p.seen < prevSeen || p.interrupted)
		if p.attempted == 0 || !progress {
			break
		}
		prevSeen = p.seen
		if ctx.Err() != nil {
			d.rep.TimedOut = true
			break
		}
	}
	if d.rep.TimedOut || (!d.opts.DryRun && last.attempted > 0) {
		// The last pass changed things (or was cut short): count what
		// is left with a dump that destroys nothing.
		var err error
		if last, err = d.count(dumper); err != nil {
			// What is left is unknown: never report it as nothing.
			d.finish(last)
			return d.rep, err
		}
	}
	d.finish(last)
	return d.rep, nil
}

// finish fills the remaining counts from the last pass.
func (d *drainer) finish(p *pass) {
	if d.opts.DryRun {
		d.rep.Destroyed = p.attempted
	}
	// Workers add what they failed to destroy to the kept set.
	d.rep.Remaining = p.kept.total
	d.rep.Bound = p.kept.bound
	d.rep.Held = p.kept.held
	d.rep.Left = p.kept.groups(d.ns.ID, d.deadline, d.opts.Keep == nil)
	if !d.opts.DryRun {
		d.rep.DestroyedBy = d.destroyed.groups()
	}
}

// count dumps every table once and records what is left. A socket closed
// and still bound after the drain destroyed it counts as bound, not as
// remaining.
func (d *drainer) count(dumper *sockdiag.Conn) (*pass, error) {
	p := &pass{}
	for _, t := range d.tables {
		err := dumper.Dump(t.family, t.protocol, sockdiag.AllStates, func(s *sockdiag.Socket) error {
			p.seen++
			if d.held(s) {
				p.kept.addHeld(s)
				return nil
			}
			if s.State == sockdiag.Close && s.Inode != 0 && d.destroyWorks(s.Protocol) {
				p.kept.addBound(s)
			} else {
				p.kept.add(s)
			}
			return nil
		})
		// An interrupted dump still counted every socket it saw; any
		// other error leaves the count unknown.
		if err != nil && !errors.Is(err, sockdiag.ErrInterrupted) {
			return p, fmt.Errorf("count the sockets left in network namespace %s: %w", d.ns.ID, err)
		}
	}
	return p, nil
}

func (d *drainer) destroyWorks(protocol uint8) bool {
	if protocol == unix.IPPROTO_UDP {
		return d.caps.UDP
	}
	return d.caps.TCP
}

// splitAbove is the socket count (from the namespace's counters) from
// which a pass dumps each TCP table in four parts on parallel dumpers: the
// dump costs the kernel about as much per socket as the destroy, and a
// single dumper would be the slowest stage.
const splitAbove = 8192

// dumpJob is one dump of a pass: a table, or a part of one.
type dumpJob struct {
	t        table
	src, dst sockdiag.PortRange
}

// jobs lists the dumps of a pass. A split TCP table is cut by local and
// remote port at the usual start of the ephemeral range: a connection has
// one fixed port (a listener's, a server's) and one ephemeral port, so both
// its accepting and its connecting ends fall in parts of their own.
func (d *drainer) jobs() []dumpJob {
	low, high := sockdiag.PortRange{Lo: 0, Hi: 32767}, sockdiag.PortRange{Lo: 32768, Hi: 65535}
	var jobs []dumpJob
	for _, t := range d.tables {
		if d.split && t.protocol == unix.IPPROTO_TCP {
			for _, src := range []sockdiag.PortRange{low, high} {
				for _, dst := range []sockdiag.PortRange{low, high} {
					jobs = append(jobs, dumpJob{t, src, dst})
				}
			}
			continue
		}
		jobs = append(jobs, dumpJob{t, sockdiag.AllPorts, sockdiag.AllPorts})
	}
	return jobs
}

// pass runs one dump of every table, handing destroyable sockets to the
// workers in batches as they stream in. Workers start with the batches:
// a small namespace costs one worker, a large one all of them.
func (d *drainer) pass(ctx context.Context, dumper *sockdiag.Conn) (*pass, error) {
	p := &pass{}
	jobs := d.jobs()
	dumpers := 1
	if d.split {
		dumpers = min(runtime.NumCPU(), len(jobs))
	}
	queue := make(chan dumpJob, len(jobs))
	for _, j := range jobs {
		queue <- j
	}
	close(queue)
	var (
		work    = make(chan []sockdiag.Socket, d.maxWorkers)
		free    = make(chan []sockdiag.Socket, 2*d.maxWorkers+dumpers+1)
		wg      sync.WaitGroup
		mu      sync.Mutex // guards started
		started int
	)
	for range cap(free) {
		free <- nil
	}
	next := func() []sockdiag.Socket {
		b := <-free
		if b == nil {
			b = make([]sockdiag.Socket, 0, batchSize)
		}
		return b[:0]
	}
	send := func(b []sockdiag.Socket) {
		mu.Lock()
		if started < d.maxWorkers {
			c, err := d.workerConn(started)
			if err == nil || started == 0 {
				started++
				wg.Add(1)
				go func() {
					defer wg.Done()
					defer d.guard()
					d.worker(ctx, c, err, p, work, free)
				}()
			}
		}
		mu.Unlock()
		work <- b
	}
	var (
		dwg   sync.WaitGroup
		derrs = make([]error, dumpers)
	)
	for i := range dumpers {
		c := dumper
		if i > 0 {
			var err error
			if c, err = d.dumpConn(i - 1); err != nil {
				break // the dumpers already running take its share
			}
		}
		dwg.Add(1)
		go func() {
			defer dwg.Done()
			defer d.guard()
			derrs[i] = d.dump(ctx, c, queue, p, next, send)
		}()
	}
	dwg.Wait()
	close(work)
	wg.Wait()
	if p.kept.orphans > 0 && !d.destroyOrphans && !d.opts.DryRun && !d.shortened {
		d.shortenOrphans()
	}
	d.rep.Spared = p.kept.orphans
	return p, errors.Join(derrs...)
}

// dump runs dump jobs from queue on c until it is empty, classifying each
// socket and sending the destroyable ones to the workers in batches.
func (d *drainer) dump(ctx context.Context, c *sockdiag.Conn, queue <-chan dumpJob, p *pass, next func() []sockdiag.Socket, send func([]sockdiag.Socket)) error {
	var local pass // merged into p once, at the end
	defer d.merge(p, &local)
	var batch []sockdiag.Socket
	if !d.opts.DryRun {
		batch = next()
		defer func() {
			if len(batch) > 0 {
				send(batch)
			}
		}()
	}
	for j := range queue {
		err := c.DumpPorts(j.t.family, j.t.protocol, sockdiag.AllStates, j.src, j.dst, func(s *sockdiag.Socket) error {
			if err := ctx.Err(); err != nil {
				return err
			}
			local.seen++
			held := d.held(s)
			local.found.add(s, held, d.opts.Occupied)
			if held {
				local.kept.addHeld(s)
				return nil
			}
			if !d.destroyable(s) {
				local.kept.add(s)
				return nil
			}
			local.attempted++
			if d.opts.DryRun {
				return nil
			}
			batch = append(batch, *s)
			if len(batch) == cap(batch) {
				send(batch)
				batch = next()
			}
			return nil
		})
		if errors.Is(err, sockdiag.ErrInterrupted) {
			local.interrupted = true
			err = nil
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// merge adds a dumper's counts to the pass.
func (d *drainer) merge(p, local *pass) {
	d.mu.Lock()
	defer d.mu.Unlock()
	p.seen += local.seen
	p.attempted += local.attempted
	p.interrupted = p.interrupted || local.interrupted
	p.kept.merge(&local.kept)
	p.found.merge(&local.found)
}

// workerConn returns the sock_diag socket of worker i, opening it on first use.
func (d *drainer) workerConn(i int) (*sockdiag.Conn, error) { return d.connAt(&d.workConns, i) }

// dumpConn returns the sock_diag socket of the extra dumper i, opening it
// on first use.
func (d *drainer) dumpConn(i int) (*sockdiag.Conn, error) { return d.connAt(&d.dumpConns, i) }

// connAt returns (*list)[i], opening sockets until the list is that long.
func (d *drainer) connAt(list *[]*sockdiag.Conn, i int) (*sockdiag.Conn, error) {
	for len(*list) <= i {
		c, err := d.open()
		if err != nil {
			return nil, err
		}
		*list = append(*list, c)
	}
	return (*list)[i], nil
}

// worker destroys batches from work. With a nil conn (openErr says why)
// it records every socket it gets as kept, so the drain still ends.
func (d *drainer) worker(ctx context.Context, c *sockdiag.Conn, openErr error, p *pass, work <-chan []sockdiag.Socket, free chan<- []sockdiag.Socket) {
	res := make([]error, batchSize)
	for b := range work {
		if ctx.Err() != nil {
			free <- b[:0]
			continue
		}
		err := openErr
		if c != nil {
			err = c.Destroy(b, res)
		}
		d.record(p, b, res, err)
		free <- b[:0]
	}
}

// guard turns a panic of a drain goroutine into a report error: sockreap
// runs as a hook, and a bug must not take the container runtime's call
// down with it.
func (d *drainer) guard() {
	if r := recover(); r != nil {
		d.mu.Lock()
		d.rep.addError(fmt.Errorf("internal error (please report): %v", r))
		d.mu.Unlock()
	}
}

// record books the outcome of a destroyed batch into the pass and the
// report. err is a transport failure: then nothing in b is known destroyed.
func (d *drainer) record(p *pass, b []sockdiag.Socket, res []error, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err != nil {
		d.rep.addError(err)
		for i := range b {
			p.kept.add(&b[i])
		}
		return
	}
	for i, e := range res[:len(b)] {
		switch {
		case e == nil:
			p.destroyed++
			d.rep.Destroyed++
			d.destroyed.add(&b[i], false, d.opts.Occupied)
		case errors.Is(e, sockdiag.ErrGone):
			p.gone++
			d.rep.AlreadyGone++
		case errors.Is(e, sockdiag.ErrUnsupported):
			d.rep.Unsupported++
			p.kept.add(&b[i])
		default:
			d.rep.addError(e)
			p.kept.add(&b[i])
		}
	}
}

// held tells whether a process outside the namespace holds s, so that the
// drain must leave it alone (Options.Keep).
func (d *drainer) held(s *sockdiag.Socket) bool {
	return d.opts.Keep != nil && s.Inode != 0 && d.opts.Keep(uint64(s.Inode))
}

// destroyable decides, per socket, whether the drain may destroy it on this
// kernel.
func (d *drainer) destroyable(s *sockdiag.Socket) bool {
	if s.Protocol == unix.IPPROTO_TCP {
		switch {
		case s.State == sockdiag.TimeWait || s.Timer == sockdiag.TimerTimeWait:
			// Holds no namespace reference and dies with the namespace;
			// older kernels refuse to destroy it.
			return d.caps.TimeWait
		case s.Orphan():
			return d.destroyOrphans
		}
	}
	return true
}

// shortenOrphans lowers the namespace's orphan retries and FIN timeout so
// that spared orphans die within seconds instead of minutes. The namespace
// is being torn down, so nothing else depends on these values.
func (d *drainer) shortenOrphans() {
	d.shortened = true
	err := d.ns.Do(func() error {
		var errs []error
		for _, kv := range [][2]string{
			{"/proc/sys/net/ipv4/tcp_orphan_retries", "1"},
			{"/proc/sys/net/ipv4/tcp_fin_timeout", "1"},
		} {
			if err := os.WriteFile(kv[0], []byte(kv[1]), 0); err != nil {
				errs = append(errs, err)
			}
		}
		return errors.Join(errs...)
	})
	if err != nil {
		d.warn("shorten orphan lifetime: %v", err)
		return
	}
	d.warn("orphans spared (kernel lacks the tcp_abort orphan fix); set tcp_orphan_retries=1 and tcp_fin_timeout=1 in the namespace so they expire within seconds")
}
