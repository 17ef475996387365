// Package textsafe makes untrusted strings safe to print on a terminal.
// Container ids come from whoever starts a container, and a process's
// command name from the process itself: printed raw, a newline forges an
// output line and an escape sequence rewrites the operator's screen. Such
// strings are printed Go-quoted (strconv.Quote), everything else as it is,
// so ordinary names read unchanged. JSON output needs none of this: its
// encoder escapes control characters.
package textsafe

import (
	"strconv"
	"unicode"
	"unicode/utf8"
)

// Quote returns s unchanged when every rune of it is printable (letters,
// digits, punctuation, symbols, spaces), and strconv.Quote(s) otherwise:
// control characters, escapes, invalid UTF-8, format or other invisible
// characters (bidirectional overrides among them), and the quote and
// backslash that would let a plain name pass for a quoted one.
func Quote(s string) string {
	if Safe(s) {
		return s
	}
	return strconv.Quote(s)
}

// QuoteAll applies Quote to each string.
func QuoteAll(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = Quote(s)
	}
	return out
}

// Safe reports whether s prints as itself.
func Safe(s string) bool {
	for i, r := range s {
		if r == utf8.RuneError {
			if _, size := utf8.DecodeRuneInString(s[i:]); size == 1 {
				return false
			}
		}
		if r == '"' || r == '\\' {
			return false // else it could pass for a quoted string
		}
		if r != ' ' && !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}
