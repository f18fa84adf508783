package main

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
)

// Every key of the config, nested tables' too, must say what it is: berthd
// config default prints the doc tag as the key's comment.
func TestEveryConfigKeyHasDoc(t *testing.T) {
	var walk func(tp reflect.Type, path string)
	walk = func(tp reflect.Type, path string) {
		for i := 0; i < tp.NumField(); i++ {
			f := tp.Field(i)
			if !f.IsExported() {
				continue
			}
			key, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
			if key == "-" {
				continue
			}
			if key == "" {
				t.Errorf("%s%s: no toml tag", path, f.Name)
				continue
			}
			if strings.TrimSpace(f.Tag.Get("doc")) == "" {
				t.Errorf("config key %s%s: no doc tag", path, key)
			}
			if strings.Contains(f.Tag.Get("doc"), "\n") {
				t.Errorf("config key %s%s: doc tag is not one line", path, key)
			}
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				walk(ft, path+key+".")
			}
		}
	}
	walk(reflect.TypeOf(Config{}), "")
}

// nilToEmpty makes nil slices and maps empty ones, recursively: the printed
// default shows an unset list as [], which decodes as an empty one.
func nilToEmpty(v reflect.Value) {
	switch v.Kind() {
	case reflect.Pointer:
		if !v.IsNil() {
			nilToEmpty(v.Elem())
		}
	case reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			if v.Type().Field(i).IsExported() {
				nilToEmpty(v.Field(i))
			}
		}
	case reflect.Slice:
		if v.IsNil() && v.CanSet() {
			v.Set(reflect.MakeSlice(v.Type(), 0, 0))
		}
	case reflect.Map:
		if v.IsNil() && v.CanSet() {
			v.Set(reflect.MakeMap(v.Type()))
		}
	}
}

func TestConfigDefaultParsesBack(t *testing.T) {
	text, err := defaultConfigTOML()
	if err != nil {
		t.Fatal(err)
	}
	var got Config
	md, err := toml.Decode(text, &got)
	if err != nil {
		t.Fatalf("printed default does not parse: %v\n%s", err, text)
	}
	if u := md.Undecoded(); len(u) > 0 {
		t.Errorf("printed default has keys Config does not: %v", u)
	}
	want := defaultConfig()
	nilToEmpty(reflect.ValueOf(&got).Elem())
	nilToEmpty(reflect.ValueOf(&want).Elem())
	if !reflect.DeepEqual(got, want) {
		t.Errorf("printed default parses to\n%+v\nwant defaultConfig()\n%+v", got, want)
	}
	// every top-level key is printed, each under its comment
	fields, err := configFields(reflect.ValueOf(defaultConfig()))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fields {
		if !strings.Contains(text, "# "+f.doc+"\n") {
			t.Errorf("key %s: doc comment missing from the output", f.key)
		}
	}
	// and what berthd would take as is
	path := filepath.Join(t.TempDir(), "config.toml")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := checkConfigFile(path); err != nil {
		t.Errorf("printed default does not check: %v", err)
	}
}

// Nested tables (a sub-struct, as [nri] will be) come after the top-level
// keys, each under [name], and parse back.
func TestConfigTableOutput(t *testing.T) {
	type inner struct {
		Enable bool     `toml:"enable" doc:"turn it on"`
		Dirs   []string `toml:"dirs" doc:"where"`
	}
	type deep struct {
		N int `toml:"n" doc:"a number"`
	}
	type outer struct {
		Name  string `toml:"name" doc:"the name"`
		Inner inner  `toml:"inner" doc:"a table"`
		Deep  *deep  `toml:"deep" doc:"a table by pointer"`
		After string `toml:"after" doc:"a key after the tables"`
		skip  int
	}
	in := outer{Name: "x \"q\"", Inner: inner{Enable: true, Dirs: []string{"/a"}}, Deep: &deep{N: 3}, After: "y", skip: 1}
	var b strings.Builder
	if err := writeTable(&b, "", reflect.ValueOf(in)); err != nil {
		t.Fatal(err)
	}
	text := b.String()
	if i, j := strings.Index(text, "after ="), strings.Index(text, "[inner]"); i < 0 || j < 0 || i > j {
		t.Errorf("top-level keys must come before the tables:\n%s", text)
	}
	if !strings.Contains(text, "# a table\n[inner]\n") || !strings.Contains(text, "[deep]") {
		t.Errorf("tables missing:\n%s", text)
	}
	var got outer
	if _, err := toml.Decode(text, &got); err != nil {
		t.Fatalf("%v\n%s", err, text)
	}
	in.skip = 0
	if !reflect.DeepEqual(got, in) {
		t.Errorf("parsed back %+v, want %+v\n%s", got, in, text)
	}

	type undocumented struct {
		A string `toml:"a"`
	}
	if err := writeTable(&b, "", reflect.ValueOf(undocumented{})); err == nil || !strings.Contains(err.Error(), "doc") {
		t.Errorf("a key without doc tag: err = %v", err)
	}
}

func TestConfigCheckCommand(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	// root and state under a dir that does not exist: check creates nothing
	notThere := filepath.Join(dir, "not-there")
	good := write("good.toml", "root = \""+notThere+"/root\"\nstate = \""+notThere+"/state\"\ncgroup_driver = \"systemd\"\n")
	for _, tc := range []struct {
		args    []string
		code    int
		inOut   string
		inError string
	}{
		{[]string{"check", "--config", good}, 0, "ok", ""},
		{[]string{"check", "--config", write("unknown.toml", "listen = \"/x.sock\"\nbogus_key = 1\n")}, 2, "", "bogus_key"},
		{[]string{"check", "--config", write("bad.toml", "cgroup_driver = \"cgroupv3\"\n")}, 2, "", "cgroup_driver"},
		{[]string{"check", "--config", write("type.toml", "root = 3\n")}, 2, "", "root"},
		{[]string{"check", "--config", write("syntax.toml", "root = \n")}, 2, "", "syntax.toml"},
		{[]string{"check", "--config", filepath.Join(dir, "missing.toml")}, 2, "", "missing.toml"},
		{[]string{"check", "extra"}, 2, "", "usage"},
		{[]string{"nonsense"}, 2, "", "usage"},
		{nil, 2, "", "usage"},
		{[]string{"default", "x"}, 2, "", "usage"},
		{[]string{"default"}, 0, "cgroup_driver = \"cgroupfs\"", ""},
	} {
		var out, errb bytes.Buffer
		code := runConfigCommand(tc.args, &out, &errb)
		if code != tc.code || !strings.Contains(out.String(), tc.inOut) || !strings.Contains(errb.String(), tc.inError) {
			t.Errorf("config %v: exit %d, stdout %q, stderr %q; want exit %d, stdout with %q, stderr with %q",
				tc.args, code, out.String(), errb.String(), tc.code, tc.inOut, tc.inError)
		}
	}
	if _, err := os.Stat(notThere); !os.IsNotExist(err) {
		t.Errorf("config check made %s (err %v): it must change nothing", notThere, err)
	}
}
