package spec

import (
	"strings"
	"testing"
)

func TestParseList(t *testing.T) {
	for in, want := range map[string]string{"": "", " 0-3,8\n": "0-3,8", "1,0,2": "0-2", "5-5": "5", "0-1,3-4,6": "0-1,3-4,6"} {
		got, err := ParseList(in)
		if err != nil || FormatList(got) != want {
			t.Errorf("%q: %q %v, want %q", in, FormatList(got), err, want)
		}
	}
	for _, in := range []string{"-", "0-", "-1", "3-1", "a", "1,,2", "+1", "0-65536", "1 2", strings.Repeat("0-65535,", 3), strings.Repeat("1,", 40000)} {
		if _, err := ParseList(in); err == nil {
			t.Errorf("%q: parsed", in)
		}
	}
}
