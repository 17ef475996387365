package textsafe

import "testing"

func TestQuote(t *testing.T) {
	for in, want := range map[string]string{
		"c1":                "c1",
		"abc-def_1.2+x":     "abc-def_1.2+x",
		"my container":      "my container",
		"été":               "été",
		"a\nb":              `"a\nb"`,
		"x\x1b[2Jy":         `"x\x1b[2Jy"`,
		"tab\there":         `"tab\there"`,
		"bad\xffutf8":       `"bad\xffutf8"`,
		"rtl\u202eoverride": `"rtl\u202eoverride"`,
		"":                  "",
		"bell\a":            `"bell\a"`,
		"del\x7f":           `"del\x7f"`,
		"c1 control \u0085": `"c1 control \u0085"`,
		`"a\nb"`:            `"\"a\\nb\""`,
	} {
		if got := Quote(in); got != want {
			t.Errorf("Quote(%q) = %s, want %s", in, got, want)
		}
	}
	if got := QuoteAll([]string{"a", "b\n"}); got[0] != "a" || got[1] != `"b\n"` {
		t.Errorf("QuoteAll = %q", got)
	}
}
