package reap

import (
	"time"

	"github.com/sockreap/sockreap/internal/netns"
	"github.com/sockreap/sockreap/internal/sockdiag"
)

// maxTrackedInodes bounds the inodes kept to tell process-held sockets from
// kernel sockets among what is left, so memory stays constant.
const maxTrackedInodes = 4096

// keptSet counts sockets a pass left in place, grouped by protocol, state
// and owner kind.
type keptSet struct {
	total   int
	orphans int
	bound   int // closed sockets still bound to a port (counted in groups, not in total)
	held    int // sockets Options.Keep kept (counted in total too)
	counts  map[groupKey]int
	inodes  map[uint32]groupKey // sockets with a struct socket: owner resolved later
}

func (k *keptSet) add(s *sockdiag.Socket) {
	k.total++
	k.group(s)
}

// addBound records a socket that a successful destroy left closed but
// still bound to its port (a descriptor of a process or a kernel user
// holds it): it carries no connection and goes with its holder.
func (k *keptSet) addBound(s *sockdiag.Socket) {
	k.bound++
	k.group(s)
}

// addHeld records a socket left alone because a process outside the
// namespace holds it.
func (k *keptSet) addHeld(s *sockdiag.Socket) {
	k.total++
	k.held++
	if k.counts == nil {
		k.counts = map[groupKey]int{}
	}
	k.counts[groupKey{proto: sockdiag.ProtocolName(s.Protocol), state: s.State.String(), owner: OwnerKept}]++
}

// merge adds o's counts to k.
func (k *keptSet) merge(o *keptSet) {
	k.total += o.total
	k.orphans += o.orphans
	k.bound += o.bound
	k.held += o.held
	if k.counts == nil {
		k.counts = map[groupKey]int{}
	}
	for key, n := range o.counts {
		k.counts[key] += n
	}
	for ino, key := range o.inodes {
		if k.inodes == nil {
			k.inodes = map[uint32]groupKey{}
		}
		if len(k.inodes) < maxTrackedInodes {
			k.inodes[ino] = key
		} else {
			key.owner = OwnerProcess
			k.counts[key]++
		}
	}
}

func (k *keptSet) group(s *sockdiag.Socket) {
	if k.counts == nil {
		k.counts = map[groupKey]int{}
	}
	key := groupKey{proto: sockdiag.ProtocolName(s.Protocol), state: s.State.String()}
	switch {
	case s.Mini():
		key.owner = OwnerMini
	case s.Inode == 0:
		key.owner = OwnerOrphan
		if s.Orphan() {
			k.orphans++
		}
	default:
		if k.inodes == nil {
			k.inodes = map[uint32]groupKey{}
		}
		if len(k.inodes) < maxTrackedInodes {
			k.inodes[s.Inode] = key
			return
		}
		key.owner = OwnerProcess
	}
	k.counts[key]++
}

// groups resolves the owners of inode-bearing sockets and returns the
// groups. The processes inside the namespace are scanned first (they hold
// almost every such socket), then, for what is still unresolved, every
// other process until the deadline: a descriptor may have been passed to a
// process elsewhere. What no process holds is the kernel's; what the
// deadline left unscanned is counted as the kernel's too. Without scan
// (a holder scan before the drain found no holder for them), every such
// socket is the kernel's.
func (k *keptSet) groups(id netns.ID, deadline time.Time, scan bool) []Group {
	if k.counts == nil {
		return []Group{}
	}
	if len(k.inodes) > 0 && !scan {
		for _, key := range k.inodes {
			key.owner = OwnerKernel
			k.counts[key]++
		}
		k.inodes = nil
	}
	if len(k.inodes) > 0 {
		want := make(map[uint32]bool, len(k.inodes))
		for ino := range k.inodes {
			want[ino] = true
		}
		var inside []int
		if procs, _, err := netns.Procs(id); err == nil {
			for _, p := range procs {
				inside = append(inside, p.PID)
			}
		}
		held := netns.SocketHolders(want, inside, deadline)
		if len(held) < len(want) {
			for ino := range held {
				delete(want, ino)
			}
			for ino, p := range netns.SocketHolders(want, nil, deadline) {
				held[ino] = p
			}
		}
		for ino, key := range k.inodes {
			key.owner = OwnerKernel
			if _, ok := held[ino]; ok {
				key.owner = OwnerProcess
			}
			k.counts[key]++
		}
		k.inodes = nil
	}
	return groupsOf(k.counts)
}
