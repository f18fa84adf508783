package registryconf

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestParseOrderAndFields(t *testing.T) {
	data := `server = "https://registry-1.docker.io"

[host."http://127.0.0.1:5000"]
  capabilities = ["pull", "resolve"]

[host."https://mirror.example/v2/proxy"]
  capabilities = ["pull"]
  skip_verify = true
  ca = ["ca.pem", "/abs/ca2.pem"]
  override_path = true
  [host."https://mirror.example/v2/proxy".header]
    x-custom = ["1"]

[host."https://a.example/prefix"]
`
	hosts, err := Parse([]byte(data), "/conf/docker.io", "docker.io")
	if err != nil {
		t.Fatal(err)
	}
	var urls []string
	for _, h := range hosts {
		urls = append(urls, h.URL())
	}
	want := []string{"http://127.0.0.1:5000/v2", "https://mirror.example/v2/proxy", "https://a.example/prefix/v2", "https://registry-1.docker.io/v2"}
	if !reflect.DeepEqual(urls, want) {
		t.Errorf("urls = %v, want %v (file order, upstream last)", urls, want)
	}
	m := hosts[1]
	if !m.SkipVerify || m.Has(CapResolve) || !m.Has(CapPull) || !m.Mirror || m.Header["x-custom"][0] != "1" {
		t.Errorf("mirror = %+v", m)
	}
	if !reflect.DeepEqual(m.CAs, []string{"/conf/docker.io/ca.pem", "/abs/ca2.pem"}) {
		t.Errorf("cas = %v", m.CAs)
	}
	if hosts[3].Mirror {
		t.Errorf("upstream marked as mirror")
	}
}

func TestErrors(t *testing.T) {
	for data, want := range map[string]string{
		`bogus = 1`:        "bogus",
		`[host."ftp://x"]`: "scheme",
		`[host."https://x"]` + "\ncapabilities = [\"fly\"]": "capability",
		`[host."https://x"]` + "\nca = 3":                   "ca",
		`[host."https://x"]` + "\nclient = 3":               "client",
		`server = `:                                         "",
	} {
		if _, err := Parse([]byte(data), "/d", "r.io"); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: err = %v, want one naming %q", data, err, want)
		}
	}
}

func TestLoadLookup(t *testing.T) {
	root := t.TempDir()
	hosts, err := Load(root, "registry.k8s.io")
	if err != nil || len(hosts) != 1 || hosts[0].URL() != "https://registry.k8s.io/v2" {
		t.Fatalf("no config: %v %v", hosts, err)
	}
	if hosts, _ := Load(root, "docker.io"); hosts[0].Host != "registry-1.docker.io" {
		t.Errorf("docker.io default = %v", hosts[0])
	}
	if hosts, _ := Load(root, "localhost:5000"); hosts[0].Scheme != "http" {
		t.Errorf("localhost default = %v", hosts[0])
	}
	write := func(dir, data string) {
		if err := os.MkdirAll(filepath.Join(root, dir), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, dir, "hosts.toml"), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("_default", `server = "https://default.example"`)
	write("my.reg_5000_", `server = "http://my.reg:5000"`)
	if hosts, _ := Load(root, "my.reg:5000"); hosts[0].URL() != "http://my.reg:5000/v2" {
		t.Errorf("port dir: %v", hosts)
	}
	if hosts, _ := Load(root, "other.io"); hosts[0].URL() != "https://default.example/v2" {
		t.Errorf("_default: %v", hosts)
	}
	write("bad.io", "x = = 1")
	if _, err := Load(root, "bad.io"); err == nil || !strings.Contains(err.Error(), "hosts.toml") {
		t.Errorf("bad file: %v", err)
	}
}

func TestClientPairs(t *testing.T) {
	for conf, want := range map[string][][2]string{
		`client = "c.pem"`:                             {{"/d/c.pem", "/d/c.pem"}},
		`client = ["c.crt", "/k/c.key"]`:               {{"/d/c.crt", "/k/c.key"}},
		`client = [["a.crt", "a.key"], ["b.pem", ""]]`: {{"/d/a.crt", "/d/a.key"}, {"/d/b.pem", "/d/b.pem"}},
	} {
		hosts, err := Parse([]byte("[host.\"https://m\"]\n"+conf+"\n"), "/d", "r.io")
		if err != nil {
			t.Errorf("%s: %v", conf, err)
			continue
		}
		if !reflect.DeepEqual(hosts[0].Clients, want) {
			t.Errorf("%s: clients = %v, want %v", conf, hosts[0].Clients, want)
		}
	}
}
