package suite

import (
	"errors"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// kmsgRecord is one kernel log record from /dev/kmsg.
type kmsgRecord struct {
	seq uint64
	msg string
}

// kmsgRead returns every kernel log record still in the ring buffer.
func kmsgRead() ([]kmsgRecord, error) {
	fd, err := unix.Open("/dev/kmsg", unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	var recs []kmsgRecord
	buf := make([]byte, 8192)
	for {
		n, err := unix.Read(fd, buf)
		if errors.Is(err, unix.EAGAIN) {
			return recs, nil
		}
		if errors.Is(err, unix.EPIPE) { // overwritten record: skip it
			continue
		}
		if err != nil {
			return recs, err
		}
		// "prio,seq,usec,flags;message\n continuation lines"
		line := string(buf[:n])
		head, msg, ok := strings.Cut(line, ";")
		if !ok {
			continue
		}
		f := strings.Split(head, ",")
		if len(f) < 2 {
			continue
		}
		seq, _ := strconv.ParseUint(f[1], 10, 64)
		if i := strings.IndexByte(msg, '\n'); i >= 0 {
			msg = msg[:i]
		}
		recs = append(recs, kmsgRecord{seq: seq, msg: msg})
	}
}

// kmsgMark returns the sequence number of the newest kernel log record.
func kmsgMark() uint64 {
	recs, _ := kmsgRead()
	if len(recs) == 0 {
		return 0
	}
	return recs[len(recs)-1].seq
}

// kmsgSince returns the messages logged after mark that contain any of
// the substrings.
func kmsgSince(mark uint64, subs ...string) []string {
	recs, _ := kmsgRead()
	var out []string
	for _, r := range recs {
		if r.seq <= mark {
			continue
		}
		for _, s := range subs {
			if strings.Contains(r.msg, s) {
				out = append(out, r.msg)
				break
			}
		}
	}
	return out
}
