// Package oci reads what an OCI runtime hands a hook — the container state
// on stdin and the bundle's config.json — and injects the sockreap hooks into
// a bundle's config.json.
package oci

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// maxStateSize bounds what ReadState accepts: a state is a few hundred bytes,
// annotations included; anything near this is not a state.
const maxStateSize = 1 << 20

// ErrEmptyState is returned by ReadState when stdin holds nothing.
var ErrEmptyState = errors.New("empty OCI state on stdin: sockreap-hook stages must be run by an OCI runtime, which writes the container state JSON to the hook's stdin")

// ReadState parses the OCI state JSON a hook gets on stdin.
func ReadState(r io.Reader) (*specs.State, error) {
	if r == nil {
		return nil, ErrEmptyState
	}
	b, err := io.ReadAll(io.LimitReader(r, maxStateSize+1))
	if err != nil {
		return nil, fmt.Errorf("read OCI state from stdin: %w", err)
	}
	if len(b) > maxStateSize {
		return nil, fmt.Errorf("OCI state on stdin is larger than %d bytes: not a container state", maxStateSize)
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return nil, ErrEmptyState
	}
	var st specs.State
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&st); err != nil {
		return nil, fmt.Errorf("malformed OCI state on stdin (%s): %w", excerpt(b), err)
	}
	if dec.More() {
		return nil, fmt.Errorf("malformed OCI state on stdin (%s): trailing data after the JSON object", excerpt(b))
	}
	if st.ID == "" {
		return nil, fmt.Errorf("OCI state on stdin has no container id (%s)", excerpt(b))
	}
	return &st, nil
}

// excerpt quotes the start of b for an error message.
func excerpt(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 60 {
		s = s[:60] + "..."
	}
	return fmt.Sprintf("%q", s)
}
