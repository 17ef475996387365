package reap

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/sockreap/sockreap/internal/netns"
)

// SocketsInUse reads the namespace's own socket counters
// (/proc/net/sockstat and sockstat6 as seen from inside it) and returns
// how many TCP and UDP sockets it holds: hashed ones (listeners,
// connections, orphans and kernel sockets alike) and TIME_WAIT. Zero means
// there is nothing to drain. A dump
// walks the kernel's whole connection hash table, shared by every
// namespace, which costs ~10 ms per family on a large host; most containers
// stop with nothing left, and this check costs microseconds.
func SocketsInUse(ns *netns.NS) (int, error) {
	var total int
	err := ns.Do(func() error {
		for _, f := range []string{"/proc/thread-self/net/sockstat", "/proc/thread-self/net/sockstat6"} {
			n, err := sockstatInUse(f)
			if err != nil {
				return err
			}
			total += n
		}
		return nil
	})
	return total, err
}

// sockstatInUse sums the TCP/UDP "inuse" and "tw" counters of a sockstat file.
func sockstatInUse(path string) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("read socket counters: %w", err)
	}
	defer f.Close()
	sum, seen := 0, false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		proto, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		switch proto {
		case "TCP", "TCP6", "UDP", "UDP6", "UDPLITE", "UDPLITE6":
		default:
			continue
		}
		fields := strings.Fields(rest)
		for i := 0; i+1 < len(fields); i += 2 {
			if fields[i] == "inuse" || fields[i] == "tw" {
				n, err := strconv.Atoi(fields[i+1])
				if err != nil {
					return 0, fmt.Errorf("read socket counters %s: bad line %q", path, sc.Text())
				}
				sum += n
				seen = true
			}
		}
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("read socket counters %s: %w", path, err)
	}
	if !seen {
		return 0, fmt.Errorf("read socket counters %s: no TCP/UDP counters in it", path)
	}
	return sum, nil
}
