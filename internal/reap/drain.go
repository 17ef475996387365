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
	defer func() { d.rep.DurationUS = time.Since(start).Microseconds() }()

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
	case OrphansSpare:
	case OrphansAuto, "":
		d.destroyOrphans = d.caps.OrphanSafe
	default:
		return nil, fmt.Errorf("unknown orphan policy %q (auto, destroy or spare)", opts.Orphans)
	}
	d.tables = tables(opts)
	if len(d.tables) == 0 {
		return nil, errors.New("no protocol selected: enable TCP or UDP")
	}

	workers := opts.Workers
	if workers <= 0 {
		workers = runtime.NumCPU()
	}
	// Destroy batches are long system calls. With a P for each of them
	// and the dumper, a goroutine never waits for the scheduler to take
	// a P back from a thread stuck in the kernel.
	if prev := runtime.GOMAXPROCS(0); prev < workers+2 {
		runtime.GOMAXPROCS(workers + 2)
		defer runtime.GOMAXPROCS(prev)
	}
	if opts.DryRun {
		workers = 0
	}
	conns := make([]*sockdiag.Conn, workers+1)
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}()
	err := ns.Do(func() error {
		for i := range conns {
			c, err := sockdiag.Open()
			if err != nil {
				return err
			}
			conns[i] = c
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("open sock_diag in network namespace %s: %w", ns.ID, err)
	}
	d.ns = ns
	return d.run(ctx, conns[0], conns[1:])
}

type drainer struct {
	opts           Options
	caps           *Capabilities
	destroyOrphans bool
	tables         []table
	ns             *netns.NS
	rep            *Report
	shortened      bool // orphan lifetime sysctls written

	mu sync.Mutex // guards rep counters updated by workers
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
	destroyed, gone int
	unsupported     int
	kept            keptSet
	interrupted     bool
}

func (d *drainer) run(ctx context.Context, dumper *sockdiag.Conn, workers []*sockdiag.Conn) (*Report, error) {
	var last *pass
	prevSeen := -1
	for {
		p, err := d.pass(ctx, dumper, workers)
		d.rep.Passes++
		if d.rep.Passes == 1 {
			d.rep.Found = p.seen
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
		last = d.count(dumper)
	}
	d.finish(last)
	return d.rep, nil
}

// finish fills the remaining counts from the last pass.
func (d *drainer) finish(p *pass) {
	if p == nil {
		return
	}
	if d.opts.DryRun {
		d.rep.Destroyed = p.attempted
	}
	// Workers add what they failed to destroy to the kept set.
	d.rep.Remaining = p.kept.total
	d.rep.Left = p.kept.groups(d.ns.ID)
}

// count dumps every table once and records all sockets as kept.
func (d *drainer) count(dumper *sockdiag.Conn) *pass {
	p := &pass{}
	for _, t := range d.tables {
		_ = dumpAll(dumper, t, func(s *sockdiag.Socket) error {
			p.seen++
			p.kept.add(s)
			return nil
		})
	}
	return p
}

func dumpAll(c *sockdiag.Conn, t table, fn func(*sockdiag.Socket) error) error {
	err := c.Dump(t.family, t.protocol, sockdiag.AllStates, fn)
	if errors.Is(err, sockdiag.ErrInterrupted) {
		return err
	}
	return err
}

// pass runs one dump of every table, handing destroyable sockets to the
// workers in batches as they stream in.
func (d *drainer) pass(ctx context.Context, dumper *sockdiag.Conn, conns []*sockdiag.Conn) (*pass, error) {
	p := &pass{}
	var (
		work  chan []sockdiag.Socket
		free  chan []sockdiag.Socket
		wg    sync.WaitGroup
		batch []sockdiag.Socket
	)
	if !d.opts.DryRun {
		work = make(chan []sockdiag.Socket, 2*len(conns))
		free = make(chan []sockdiag.Socket, 3*len(conns)+1)
		for range cap(free) {
			free <- make([]sockdiag.Socket, 0, batchSize)
		}
		for _, c := range conns {
			wg.Add(1)
			go func() {
				defer wg.Done()
				d.worker(ctx, c, p, work, free)
			}()
		}
		batch = <-free
	}
	var derr error
	for _, t := range d.tables {
		err := dumpAll(dumper, t, func(s *sockdiag.Socket) error {
			if err := ctx.Err(); err != nil {
				return err
			}
			p.seen++
			if !d.destroyable(s) {
				p.kept.add(s)
				return nil
			}
			p.attempted++
			if d.opts.DryRun {
				return nil
			}
			batch = append(batch, *s)
			if len(batch) == cap(batch) {
				work <- batch
				batch = <-free
			}
			return nil
		})
		if errors.Is(err, sockdiag.ErrInterrupted) {
			p.interrupted = true
			err = nil
		}
		if err != nil {
			derr = err
			break
		}
	}
	if !d.opts.DryRun {
		if len(batch) > 0 {
			work <- batch
		}
		close(work)
		wg.Wait()
	}
	if p.kept.orphans > 0 && !d.destroyOrphans && !d.opts.DryRun && !d.shortened {
		d.shortenOrphans()
	}
	d.rep.Spared = p.kept.orphans
	return p, derr
}

func (d *drainer) worker(ctx context.Context, c *sockdiag.Conn, p *pass, work <-chan []sockdiag.Socket, free chan<- []sockdiag.Socket) {
	res := make([]error, batchSize)
	for b := range work {
		if ctx.Err() != nil {
			free <- b[:0]
			continue
		}
		err := c.Destroy(b, res)
		d.mu.Lock()
		if err != nil {
			d.rep.addError(err)
			for i := range b {
				p.kept.add(&b[i])
			}
		} else {
			for i, e := range res[:len(b)] {
				switch {
				case e == nil:
					p.destroyed++
					d.rep.Destroyed++
				case errors.Is(e, sockdiag.ErrGone):
					p.gone++
					d.rep.AlreadyGone++
				case errors.Is(e, sockdiag.ErrUnsupported):
					p.unsupported++
					d.rep.Unsupported++
					p.kept.add(&b[i])
				default:
					d.rep.addError(e)
					p.kept.add(&b[i])
				}
			}
		}
		d.mu.Unlock()
		free <- b[:0]
	}
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
