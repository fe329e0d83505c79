package main

import (
	"io"
	"os"
)

// logFormat resolves -log-format: "auto" (the default) means JSON, which
// log pipelines parse, unless w is a terminal, where a person reads text.
func logFormat(format string, w io.Writer) string {
	if format != "auto" {
		return format
	}
	if f, ok := w.(*os.File); ok && isTerminal(f) {
		return "text"
	}
	return "json"
}

// isTerminal reports whether f is a character device, as a terminal is.
// (So is /dev/null, where the format does not matter.) It avoids a
// dependency on golang.org/x/term for one bit of information.
func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
