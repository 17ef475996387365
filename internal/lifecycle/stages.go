package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/sockreap/sockreap/internal/inuse"
	"github.com/sockreap/sockreap/internal/netns"
	"github.com/sockreap/sockreap/internal/oci"
	"github.com/sockreap/sockreap/internal/pin"
	"github.com/sockreap/sockreap/internal/steptime"
	"github.com/sockreap/sockreap/internal/textsafe"
)

// optedOutReason is the reason of a stage that an annotation opted out.
const optedOutReason = "opted out by annotation " + oci.AnnotationDrain

// CreateRuntime pins the container's network namespace while its init
// process (st.Pid) is alive, so that poststop can still reach it — unless
// config.json says no pin is needed (oci.PinNeeded). A pin
// left under the same id by an earlier container whose poststop never ran
// is drained, released and replaced; what became of it is the outcome's
// Leftover.
func (c *Core) CreateRuntime(ctx context.Context, st *specs.State) Outcome {
	o := Outcome{Container: st.ID}
	c.progress(o)
	cfg, cfgErr := c.Bundles.ReadConfig(st.Bundle)
	// Runtimes copy the annotations into the state, but not all of them:
	// config.json has the last word.
	if oci.DrainDisabled(st.Annotations) || cfgErr == nil && oci.DrainDisabled(cfg.Annotations) {
		o.Action, o.Reason = OptedOut, optedOutReason
		return o
	}
	var hints *pin.ConfigHints
	if cfgErr == nil {
		// First and alone, before any namespace or pin directory work:
		// hooks.d files and configure runc install this stage for every
		// container, most of which need no pin where an engine names
		// the namespace (containerd's CRI pods).
		var kind oci.NetnsKind
		if cfg.NetnsPath != "" {
			kind = c.Namespaces.Classify(cfg.NetnsPath).Kind
		}
		steptime.Mark("config.json")
		if needed, why := oci.PinNeeded(cfg, kind); !needed {
			o.Action, o.Reason = NothingToDo, "no pin needed: "+why
			return o
		}
		// Kept in the pin: poststop need not read config.json again.
		hints = &pin.ConfigHints{NetnsPath: cfg.NetnsPath, CgroupsPath: cfg.CgroupsPath}
	}
	if st.Pid <= 0 {
		return o.fail(fmt.Errorf("container %s: the OCI state has no pid (status %q), so its network namespace cannot be pinned; is the hook installed at createRuntime?", textsafe.Quote(st.ID), st.Status))
	}
	// Open the namespace once: the one checked below is the one pinned,
	// whatever happens to the pid meanwhile.
	source := "/proc/" + strconv.Itoa(st.Pid) + "/ns/net"
	ns, err := c.Namespaces.Open(source)
	steptime.Mark("ns-open")
	if err != nil {
		return o.fail(fmt.Errorf("container %s: %w", textsafe.Quote(st.ID), err))
	}
	defer ns.Close()
	o.Netns = ns.ID.String()
	c.progress(o)
	_, err = c.check(ns.ID)
	steptime.Mark("ns-check")
	if err != nil {
		// The container shares the host's (or the runtime's) namespace:
		// nothing of its own to drain later.
		o.Action, o.Reason = NothingToDrain, err.Error()
		return o
	}
	root := c.Containers.Root()
	key := pin.KeyOf(st.ID, root)
	unlock, err := c.Pins.Lock(key, true)
	steptime.Mark("lock")
	if err != nil {
		return o.fail(err)
	}
	defer unlock()
	m := pin.Meta{ID: st.ID, Key: key, Root: root, PID: st.Pid, Bundle: st.Bundle, RuntimeState: c.Containers.RuntimeState(st.ID), Config: hints}
	if c.DeferCount {
		m.Uncounted = &pin.Run{DurationUS: time.Since(c.Started).Microseconds()}
	}
	p, err := c.Pins.PinNS(ns, m)
	steptime.Mark("pin")
	var other *pin.ErrOtherNetns
	if errors.As(err, &other) {
		// A leftover of an earlier container with this key whose
		// poststop never ran: empty it and make room — unless processes
		// still run in its namespace, whose pin is then not ours to
		// release.
		left := c.releaseLeftover(ctx, other.Existing)
		o.Leftover = &left
		if left.Action == SkippedShared {
			return o.fail(fmt.Errorf("container %s: pin %s holds namespace %s in which live processes run (%s); left alone, so this container's namespace is not pinned and will not be drained at delete",
				st.ID, other.Existing.Path, other.Existing.NS, inuse.DescribeUsers(left.Processes)))
		}
		o.warn("replaced a leftover pin of %s (%s)", other.Existing.NS, left.Message())
		if left.Err != nil {
			o.warn("leftover pin: %v", left.Err)
		}
		m.Uncounted = nil // counted now, with the leftover's drain
		p, err = c.Pins.PinNS(ns, m)
	}
	if p != nil {
		o.Pin = p.Path
		c.progress(o)
	}
	if err != nil {
		if p != nil && p.Mounted {
			o.warn("%v", err) // pinned; only the metadata is missing
			o.Action = Pinned
			return o
		}
		return o.fail(err)
	}
	o.Action = Pinned
	o.CountDeferred = m.Uncounted != nil
	return o
}

// Poststop drains the container's namespace — through its pin, or through
// a namespace mount named in config.json that the engine still holds (CNI,
// Docker) — and releases the pin, also when the drain was skipped or
// failed: a pin must not outlive its container.
func (c *Core) Poststop(ctx context.Context, st *specs.State) Outcome {
	o := Outcome{Container: st.ID}
	c.progress(o)
	if err := pin.ValidID(st.ID); err != nil {
		return o.fail(err)
	}
	key := c.poststopKey(st)
	unlock, err := c.Pins.Lock(key, true)
	if err != nil {
		return o.fail(err)
	}
	defer unlock()

	p, perr := c.Pins.Get(key)
	steptime.Mark("pin-lookup")
	if perr != nil && !errors.Is(perr, pin.ErrNoPin) {
		o.warn("%v", perr)
	}
	if p != nil {
		o.Pin = p.Path
		c.progress(o)
	}
	optedOut := oci.DrainDisabled(st.Annotations)
	var cfg *oci.Config
	var cfgErr error
	if h := pinnedConfig(p); h != nil && !optedOut {
		// createRuntime read config.json: it did not opt out (or there
		// would be no pin), and its hints are in the pin.
		cfg = &oci.Config{HasNetns: true, NetnsPath: h.NetnsPath, CgroupsPath: h.CgroupsPath}
	} else if !optedOut {
		// Runtimes copy the annotations into the state, but not all of
		// them: config.json has the last word.
		if cfg, cfgErr = c.Bundles.ReadConfig(st.Bundle); cfgErr == nil {
			optedOut = oci.DrainDisabled(cfg.Annotations)
		}
		steptime.Mark("config.json")
	}
	if optedOut {
		o.Action, o.Reason = OptedOut, optedOutReason
		if p != nil {
			o.Released, o.Err = c.Pins.Release(key)
			o.Uncounted = uncounted(p, o.Released)
		}
		return o
	}
	if p != nil && p.Mounted {
		d := c.drainAndRelease(ctx, p, poststopHint(st, p, cfg))
		d.Warnings = append(o.Warnings, d.Warnings...)
		return d
	}
	if p != nil {
		o.warn("pin %s is no longer a network namespace mount (unmounted by someone else?); removed it", textsafe.Quote(p.Path))
		released, err := c.Pins.Release(key)
		if err != nil {
			o.warn("%v", err)
		}
		o.Pin, o.Uncounted = "", uncounted(p, released)
	}

	// No pin: the namespace may still be reachable through a mount the
	// engine keeps (CNI, docker), named in config.json.
	if cfgErr != nil {
		return o.fail(fmt.Errorf("container %s: no pin at %s and %w", textsafe.Quote(st.ID), textsafe.Quote(c.Pins.Path(key)), cfgErr))
	}
	if !cfg.HasNetns {
		o.Action, o.Reason = NothingToDrain, "the container has no network namespace of its own"
		return o
	}
	path := cfg.NetnsPath
	if path == "" {
		o.Action = NothingToDrain
		if has, err := c.Bundles.HasHook(st.Bundle, StageCreateRuntime); err == nil && has {
			// runc runs poststop also when create failed before the
			// createRuntime hook: there was never a namespace to pin.
			o.Reason = "no pin: createRuntime never pinned this container (the runtime failed to create it before that hook ran, or the hook failed: see its log line)"
			return o
		}
		o.warn("no pin for container %s at %s and config.json names no namespace path: was the createRuntime hook installed?", textsafe.Quote(st.ID), textsafe.Quote(c.Pins.Path(key)))
		return o
	}
	switch np := c.Namespaces.Classify(path); np.Kind {
	case oci.NetnsProc:
		o.Action = NothingToDrain
		if why := c.sharesHostOrOwn(np.Resolved); why != "" {
			// hostNetwork pods: every app container names the pause
			// process's namespace, which is the host's. Expected, so quiet.
			o.Reason = why
			return o
		}
		o.warn("config.json names the namespace by process (%s), which is stale after the container stopped; not trusted", path)
		return o
	case oci.NetnsNsfs:
		path = np.Resolved // open what was judged, not a link changed meanwhile
	default:
		o.Action = NothingToDrain
		o.warn("config.json namespace path %s is not a network namespace mount (already released)", path)
		return o
	}
	d := c.openAndDrain(ctx, path, poststopHint(st, nil, cfg))
	d.Container, d.Warnings = st.ID, append(o.Warnings, d.Warnings...)
	return d
}

// sharesHostOrOwn says why a namespace path leads to a namespace that
// check refuses (the host's or sockreap's own), "" when it does not or
// cannot be identified.
func (c *Core) sharesHostOrOwn(path string) string {
	id, err := c.Namespaces.IDOf(path)
	if err != nil {
		return ""
	}
	switch _, err := c.check(id); {
	case errors.Is(err, netns.ErrHost):
		return "the container shares the host's network namespace"
	case errors.Is(err, netns.ErrSelf):
		return "the container shares sockreap's own network namespace"
	}
	return ""
}

// poststopKey is the key of the container's pin. It is the id and the
// runtime root when the runtime runs the hook, as runc and crun do. Where
// another process runs poststop (podman runs it itself, without the
// runtime's --root), no pin is under that key: then the one pin recorded
// with this container id and this bundle is the container's.
func (c *Core) poststopKey(st *specs.State) string {
	key := pin.KeyOf(st.ID, c.Containers.Root())
	if c.Pins.Has(key) {
		return key
	}
	pins, err := c.Pins.List()
	if err != nil {
		return key
	}
	var found []string
	for _, p := range pins {
		if p.Meta != nil && p.Meta.ID == st.ID && p.Meta.Bundle == st.Bundle {
			found = append(found, p.ID)
		}
	}
	if len(found) == 1 {
		return found[0]
	}
	return key
}

// pinnedConfig is what createRuntime kept of config.json in pin p, nil
// when p is no namespace mount or kept none.
func pinnedConfig(p *pin.Pin) *pin.ConfigHints {
	if p == nil || !p.Mounted || p.Meta == nil {
		return nil
	}
	return p.Meta.Config
}

// uncounted is the createRuntime run left in pin p for its releaser to
// count, when this call released it.
func uncounted(p *pin.Pin, released bool) *pin.Run {
	if !released || p == nil || p.Meta == nil {
		return nil
	}
	return p.Meta.Uncounted
}
