package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"reflect"
	"strings"

	"github.com/BurntSushi/toml"
)

// runConfigCommand is `berthd config default` (the whole configuration
// with every key, its default and what it means, as `containerd config
// default` and `crio config` print) and `berthd config check [--config F]`
// (a file validated as berthd would read it, starting nothing and changing
// nothing on the node). Exit status 0, or 2 for a bad file or usage.
func runConfigCommand(args []string, stdout, stderr io.Writer) int {
	usage := "usage: berthd config default | berthd config check [--config FILE]"
	if len(args) == 0 {
		fmt.Fprintln(stderr, usage)
		return 2
	}
	switch args[0] {
	case "default":
		if len(args) > 1 {
			fmt.Fprintln(stderr, usage)
			return 2
		}
		text, err := defaultConfigTOML()
		if err != nil {
			fmt.Fprintf(stderr, "berthd: %v\n", err)
			return 1
		}
		fmt.Fprint(stdout, text)
		return 0
	case "check":
		fs := flag.NewFlagSet("berthd config check", flag.ContinueOnError)
		fs.SetOutput(stderr)
		path := fs.String("config", defaultConfigPath, "config file to check")
		if err := fs.Parse(args[1:]); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return 0
			}
			return 2
		}
		if fs.NArg() > 0 {
			fmt.Fprintln(stderr, usage)
			return 2
		}
		explicit := false
		fs.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "config" })
		if _, err := os.Stat(*path); errors.Is(err, os.ErrNotExist) && !explicit {
			fmt.Fprintf(stdout, "%s: none, berthd uses the defaults (berthd config default)\n", *path)
			return 0
		}
		if err := checkConfigFile(*path); err != nil {
			fmt.Fprintf(stderr, "berthd: %v\n", err)
			return 2
		}
		fmt.Fprintf(stdout, "%s: ok\n", *path)
		return 0
	default:
		fmt.Fprintln(stderr, usage)
		return 2
	}
}

// checkConfigFile decodes and validates path like berthd's start does, but
// makes no dir: a file written for another node must check there too.
func checkConfigFile(path string) error {
	cfg := defaultConfig()
	if err := decodeConfigFile(path, true, &cfg); err != nil {
		return err
	}
	return cfg.validate()
}

// defaultConfigTOML renders defaultConfig() as a TOML file: each key with
// its doc tag as a comment above it, nested tables (sub-structs) after the
// top-level keys, as TOML requires. It is made by reflection so that a key
// added to Config is printed without more code here.
func defaultConfigTOML() (string, error) {
	var b strings.Builder
	b.WriteString("# berthd configuration (" + defaultConfigPath + "), every key at its default.\n")
	b.WriteString("# Flags override the file; an unknown key or a bad value stops berthd (exit 2).\n")
	b.WriteString("# Check a file with: berthd config check --config FILE\n")
	if err := writeTable(&b, "", reflect.ValueOf(defaultConfig())); err != nil {
		return "", err
	}
	return b.String(), nil
}

// configField is one key of a config struct: its TOML name, doc and value.
type configField struct {
	key, doc string
	val      reflect.Value
}

// configFields lists the TOML keys of the struct v: exported fields not
// tagged toml:"-". A field without a toml or doc tag is an error (the test
// of this package catches it before a user would).
func configFields(v reflect.Value) ([]configField, error) {
	t := v.Type()
	var out []configField
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		key, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
		if key == "-" {
			continue
		}
		if key == "" {
			return nil, fmt.Errorf("config field %s.%s has no toml tag", t.Name(), f.Name)
		}
		doc := f.Tag.Get("doc")
		if doc == "" {
			return nil, fmt.Errorf("config key %s (%s.%s) has no doc tag", key, t.Name(), f.Name)
		}
		out = append(out, configField{key: key, doc: doc, val: v.Field(i)})
	}
	return out, nil
}

// isTable tells whether a value is printed as a [table]: a struct, or a
// pointer to one (nil prints the zero struct, every key shown).
func isTable(v reflect.Value) (reflect.Value, bool) {
	if v.Kind() == reflect.Pointer && v.Type().Elem().Kind() == reflect.Struct {
		if v.IsNil() {
			return reflect.New(v.Type().Elem()).Elem(), true
		}
		v = v.Elem()
	}
	return v, v.Kind() == reflect.Struct
}

func writeTable(b *strings.Builder, prefix string, v reflect.Value) error {
	fields, err := configFields(v)
	if err != nil {
		return err
	}
	var tables []configField
	for _, f := range fields {
		if _, ok := isTable(f.val); ok {
			tables = append(tables, f)
			continue
		}
		line, err := tomlKeyValue(f.key, f.val)
		if err != nil {
			return fmt.Errorf("config key %s%s: %w", prefix, f.key, err)
		}
		fmt.Fprintf(b, "\n# %s\n%s", f.doc, line)
	}
	for _, f := range tables {
		tv, _ := isTable(f.val)
		name := prefix + f.key
		fmt.Fprintf(b, "\n# %s\n[%s]\n", f.doc, name)
		if err := writeTable(b, name+".", tv); err != nil {
			return err
		}
	}
	return nil
}

// tomlKeyValue encodes one key = value line with the TOML encoder (quoting
// and escaping are its business). A nil slice is printed as [] (the key is
// still shown); a nil map as an empty inline table.
func tomlKeyValue(key string, v reflect.Value) (string, error) {
	val := v.Interface()
	switch {
	case v.Kind() == reflect.Slice && v.IsNil():
		val = reflect.MakeSlice(v.Type(), 0, 0).Interface()
	case v.Kind() == reflect.Map && v.Len() == 0:
		return key + " = {}\n", nil
	}
	var buf bytes.Buffer
	if err := toml.NewEncoder(&buf).Encode(map[string]any{key: val}); err != nil {
		return "", err
	}
	return buf.String(), nil
}
