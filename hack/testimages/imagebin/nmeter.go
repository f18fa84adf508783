package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// nmeter plays the part of busybox's nmeter that the node e2e suite's
// container lifecycle specs use for a timestamp with milliseconds
// (`nmeter -d0 '%3t' | head -n1`), an applet Debian's busybox leaves out:
// it prints FORMAT every -d milliseconds until its output is closed, with
// %[N]t the wall-clock time HH:MM:SS[.N digits] and every other byte as is.
// The other meters of the real nmeter are not there.
func nmeter(args []string) {
	delay := time.Second
	var format string
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "-d" && i+1 < len(args):
			i++
			a = "-d" + args[i]
			fallthrough
		case strings.HasPrefix(a, "-d"):
			ms, err := strconv.Atoi(a[2:])
			if err != nil {
				fatal("nmeter: bad delay %q", a)
			}
			delay = time.Duration(max(ms, 0)) * time.Millisecond
		default:
			format = a
		}
	}
	if format == "" {
		fatal("usage: nmeter [-d MSEC] FORMAT (only %%[N]t here)")
	}
	for {
		if _, err := fmt.Println(expandNmeter(format, time.Now())); err != nil {
			os.Exit(0) // the reader is gone, as with head -n1
		}
		time.Sleep(delay)
	}
}

// expandNmeter replaces %[N]t in format by t as HH:MM:SS with N (0-6)
// fractional digits.
func expandNmeter(format string, t time.Time) string {
	var b strings.Builder
	for i := 0; i < len(format); i++ {
		c := format[i]
		if c != '%' || i+1 >= len(format) {
			b.WriteByte(c)
			continue
		}
		j, digits := i+1, 0
		if format[j] >= '0' && format[j] <= '9' {
			digits = int(format[j] - '0')
			j++
		}
		if j < len(format) && format[j] == 't' {
			b.WriteString(t.Format("15:04:05"))
			if digits > 0 {
				frac := fmt.Sprintf("%09d", t.Nanosecond())
				b.WriteString("." + frac[:min(digits, 9)])
			}
			i = j
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}
