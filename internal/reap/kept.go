package reap

import (
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
	counts  map[groupKey]int
	inodes  map[uint32]groupKey // sockets with a struct socket: owner resolved later
}

func (k *keptSet) add(s *sockdiag.Socket) {
	k.total++
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

// groups resolves the owners of inode-bearing sockets (a process holding
// a descriptor, or else the kernel) and returns the groups.
func (k *keptSet) groups() []Group {
	if k.counts == nil {
		return []Group{}
	}
	if len(k.inodes) > 0 {
		held := netns.SocketHolders(func(ino uint32) bool { _, ok := k.inodes[ino]; return ok })
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
