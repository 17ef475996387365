package reap

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"github.com/sockreap/sockreap/internal/atomicfile"
	"github.com/sockreap/sockreap/internal/safefs"
	"github.com/sockreap/sockreap/internal/sockdiag"
	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Capabilities is what the running kernel can do, found by Probe.
type Capabilities struct {
	Kernel     string   `json:"kernel"`      // uname release
	Destroy    bool     `json:"destroy"`     // SOCK_DESTROY works at all (CONFIG_INET_DIAG_DESTROY)
	TCP        bool     `json:"tcp"`         // established TCP sockets can be destroyed
	UDP        bool     `json:"udp"`         // UDP sockets can be destroyed
	TimeWait   bool     `json:"time_wait"`   // TIME_WAIT sockets can be destroyed (~6.0+)
	Listen     bool     `json:"listen"`      // listeners can be destroyed
	OrphanSafe bool     `json:"orphan_safe"` // destroying an orphan frees it (6.11 fix)
	Notes      []string `json:"notes,omitempty"`
}

var (
	probeOnce sync.Once
	probeCaps *Capabilities
	probeErr  error
)

// cachedProbe probes once per process.
func cachedProbe() (*Capabilities, error) {
	probeOnce.Do(func() { probeCaps, probeErr = Probe() })
	return probeCaps, probeErr
}

// Probe finds the running kernel's capabilities in a scratch network
// namespace: it destroys an established connection, a listener, a UDP
// socket, a TIME_WAIT socket and an orphan stuck on a zero-window peer, and
// looks whether the orphan is really gone. The scratch namespace and every
// socket in it are released before Probe returns; the probe's orphan is
// killed by a RST from its peer in any case, so the probe itself never
// leaves a forever orphan behind.
func Probe() (*Capabilities, error) {
	caps := &Capabilities{Kernel: kernelRelease()}
	errc := make(chan error, 1)
	go func() {
		// The thread enters the scratch namespace. If it cannot return,
		// it stays locked and dies with this goroutine.
		runtime.LockOSThread()
		orig, err := vnetns.Get()
		if err != nil {
			errc <- fmt.Errorf("open current network namespace: %w", err)
			return
		}
		defer orig.Close()
		scratch, err := vnetns.New()
		if err != nil {
			errc <- fmt.Errorf("create scratch network namespace: %w", err)
			return
		}
		perr := probeIn(caps)
		scratch.Close()
		if err := vnetns.Set(orig); err != nil {
			errc <- errors.Join(perr, fmt.Errorf("leave scratch network namespace: %w", err))
			return
		}
		runtime.UnlockOSThread()
		errc <- perr
	}()
	if err := <-errc; err != nil {
		return nil, fmt.Errorf("probe kernel %s: %w", caps.Kernel, err)
	}
	return caps, nil
}

func kernelRelease() string {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return "unknown"
	}
	return unix.ByteSliceToString(u.Release[:])
}

// probeIn runs the probe in the calling thread's (scratch) namespace.
func probeIn(caps *Capabilities) error {
	if err := loUp(); err != nil {
		return err
	}
	c, err := sockdiag.Open()
	if err != nil {
		return err
	}
	defer c.Close()
	var fds []int
	defer func() {
		for _, fd := range fds {
			resetClose(fd)
		}
	}()
	keep := func(fd int) int { fds = append(fds, fd); return fd }

	lst, err := listenLo()
	if err != nil {
		return err
	}
	keep(lst)
	lport := localPort(lst)

	// Established: destroy the client end of a connection.
	cl, srv, err := pair(lst)
	if err != nil {
		return err
	}
	keep(cl)
	keep(srv)
	res, err := destroyWhere(c, unix.IPPROTO_TCP, func(s *sockdiag.Socket) bool {
		return s.State == sockdiag.Established && s.ID.Dst.Port() == lport
	})
	if err != nil {
		return fmt.Errorf("established: %w", err)
	}
	caps.TCP = res == nil
	caps.Destroy = caps.TCP
	if errors.Is(res, sockdiag.ErrUnsupported) {
		caps.Notes = append(caps.Notes, "SOCK_DESTROY refused (EOPNOTSUPP): kernel built without CONFIG_INET_DIAG_DESTROY")
		return nil
	}

	// UDP: a bound socket.
	u, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	keep(u)
	if err := unix.Bind(u, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		return err
	}
	res, err = destroyWhere(c, unix.IPPROTO_UDP, func(*sockdiag.Socket) bool { return true })
	if err != nil {
		return fmt.Errorf("udp: %w", err)
	}
	caps.UDP = res == nil
	caps.Destroy = caps.Destroy || caps.UDP

	// TIME_WAIT: the side that closes first ends in TIME_WAIT.
	cl2, srv2, err := pair(lst)
	if err != nil {
		return err
	}
	unix.Close(cl2)
	unix.Close(srv2)
	if waitFor(c, func(s *sockdiag.Socket) bool { return s.State == sockdiag.TimeWait }) {
		res, err = destroyWhere(c, unix.IPPROTO_TCP, func(s *sockdiag.Socket) bool { return s.State == sockdiag.TimeWait })
		if err != nil {
			return fmt.Errorf("time-wait: %w", err)
		}
		caps.TimeWait = res == nil
	} else {
		caps.Notes = append(caps.Notes, "no TIME_WAIT socket appeared; TIME_WAIT destroy not tested")
	}

	// Orphan: a client whose peer stopped reading closes with unsent data
	// (FIN_WAIT1, zero window). Destroy it, then see whether it is gone.
	if err := probeOrphan(c, lst, caps); err != nil {
		return fmt.Errorf("orphan: %w", err)
	}

	// Listener last: it also drops the pending connections.
	res, err = destroyWhere(c, unix.IPPROTO_TCP, func(s *sockdiag.Socket) bool { return s.State == sockdiag.Listen })
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	caps.Listen = res == nil
	return nil
}

func probeOrphan(c *sockdiag.Conn, lst int, caps *Capabilities) error {
	cl, srv, err := pair(lst)
	if err != nil {
		return err
	}
	// The peer's RST (SO_LINGER 0 close) ends the orphan whatever the
	// destroy did, so the probe never leaves one behind.
	defer resetClose(srv)
	_ = unix.SetNonblock(cl, true)
	buf := make([]byte, 64<<10)
	for {
		_, err := unix.Write(cl, buf)
		if err == unix.EAGAIN {
			break
		}
		if err != nil {
			unix.Close(cl)
			return fmt.Errorf("fill: %w", err)
		}
	}
	unix.Close(cl)
	isOrphan := func(s *sockdiag.Socket) bool { return s.Orphan() && s.State == sockdiag.FinWait1 }
	if !waitFor(c, isOrphan) {
		caps.Notes = append(caps.Notes, "no orphan appeared; orphans will be spared")
		return nil
	}
	var cookie uint64
	res, err := destroyWhere(c, unix.IPPROTO_TCP, func(s *sockdiag.Socket) bool {
		if isOrphan(s) {
			cookie = s.ID.Cookie
			return true
		}
		return false
	})
	if err != nil {
		return err
	}
	if res != nil {
		caps.Notes = append(caps.Notes, "orphan destroy refused: "+res.Error())
		return nil
	}
	still := false
	err = c.Dump(unix.AF_INET, unix.IPPROTO_TCP, sockdiag.AllStates, func(s *sockdiag.Socket) error {
		if s.ID.Cookie == cookie {
			still = true
		}
		return nil
	})
	if err != nil {
		return err
	}
	caps.OrphanSafe = !still
	if still {
		caps.Notes = append(caps.Notes, "destroying an orphan leaves it in place (kernel lacks \"tcp: Fix forever orphan socket caused by tcp_abort\"): orphans are spared and their lifetime shortened")
	}
	return nil
}

// destroyWhere destroys the first IPv4 socket of protocol matching pick and
// returns the kernel's answer (nil, ErrGone, ErrUnsupported, ...). err is a
// transport failure or "none found".
func destroyWhere(c *sockdiag.Conn, protocol uint8, pick func(*sockdiag.Socket) bool) (res error, err error) {
	var found []sockdiag.Socket
	err = c.Dump(unix.AF_INET, protocol, sockdiag.AllStates, func(s *sockdiag.Socket) error {
		if len(found) == 0 && pick(s) {
			found = append(found, *s)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(found) == 0 {
		return nil, errors.New("probe socket not found in dump")
	}
	out := make([]error, 1)
	if err := c.Destroy(found, out); err != nil {
		return nil, err
	}
	return out[0], nil
}

// waitFor polls the IPv4 TCP table for up to 200 ms until pick matches.
func waitFor(c *sockdiag.Conn, pick func(*sockdiag.Socket) bool) bool {
	for i := 0; i < 40; i++ {
		hit := false
		_ = c.Dump(unix.AF_INET, unix.IPPROTO_TCP, sockdiag.AllStates, func(s *sockdiag.Socket) error {
			hit = hit || pick(s)
			return nil
		})
		if hit {
			return true
		}
		time.Sleep(5 * time.Millisecond)
	}
	return false
}

func loUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	ifr.SetUint16(unix.IFF_UP | unix.IFF_LOOPBACK | unix.IFF_RUNNING)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("bring lo up: %w", err)
	}
	return nil
}

func listenLo() (int, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	// A tiny receive buffer closes the window of unread connections fast.
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 2048)
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		unix.Close(fd)
		return -1, err
	}
	if err := unix.Listen(fd, 16); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

func localPort(fd int) uint16 {
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return 0
	}
	if in, ok := sa.(*unix.SockaddrInet4); ok {
		return uint16(in.Port)
	}
	return 0
}

// pair connects a client to the listener and accepts it.
func pair(lst int) (client, server int, err error) {
	client, err = unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, -1, err
	}
	if err := unix.Connect(client, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}, Port: int(localPort(lst))}); err != nil {
		unix.Close(client)
		return -1, -1, fmt.Errorf("connect: %w", err)
	}
	server, _, err = unix.Accept4(lst, unix.SOCK_CLOEXEC)
	if err != nil {
		unix.Close(client)
		return -1, -1, fmt.Errorf("accept: %w", err)
	}
	return client, server, nil
}

func resetClose(fd int) {
	_ = unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
	unix.Close(fd)
}

type probeRecord struct {
	BootID string        `json:"boot_id"`
	Caps   *Capabilities `json:"capabilities"`
}

// ProbeCached returns the capabilities recorded in dir/probe.json when they
// were found on this kernel since this boot, and probes (and records them)
// otherwise. Hooks use it so that only the first container stop after a boot
// pays for the probe.
//
// Concurrent callers (many containers stopping at once after a boot) probe
// one at a time under dir/probe.lock, so only the first one probes and the
// others read its result.
func ProbeCached(dir string) (*Capabilities, error) {
	boot, _ := os.ReadFile("/proc/sys/kernel/random/boot_id")
	boot = bytes.TrimSpace(boot)
	file := filepath.Join(dir, "probe.json")
	cached := func() *Capabilities {
		// The cache lives in the state directory: no symlink, no
		// monster file is read.
		b, err := safefs.ReadFile(file, 1<<16)
		if err != nil || len(boot) == 0 {
			return nil
		}
		var rec probeRecord
		if json.Unmarshal(b, &rec) == nil && rec.BootID == string(boot) && rec.Caps != nil && rec.Caps.Kernel == kernelRelease() {
			return rec.Caps
		}
		return nil
	}
	if c := cached(); c != nil {
		return c, nil
	}
	if err := safefs.MkdirPrivate(dir); err == nil {
		if f, err := os.OpenFile(filepath.Join(dir, "probe.lock"), os.O_RDWR|os.O_CREATE|unix.O_NOFOLLOW, 0o600); err == nil {
			defer f.Close()
			if unix.Flock(int(f.Fd()), unix.LOCK_EX) == nil {
				if c := cached(); c != nil {
					return c, nil
				}
			}
		}
	}
	caps, err := Probe()
	if err != nil {
		return nil, err
	}
	if len(boot) > 0 {
		// A cache that cannot be written only costs the next hook a probe.
		b, _ := json.Marshal(probeRecord{BootID: string(boot), Caps: caps})
		_ = atomicfile.WriteVolatile(file, b, 0o600)
	}
	return caps, nil
}
