package main

import "testing"

func TestSeccompDefaultConfig(t *testing.T) {
	cfg, err := parse(t, "")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.SeccompDefault {
		t.Error("seccomp_default is on by default; an unset profile must stay unconfined")
	}
	if cfg, err = parse(t, "seccomp_default = true\n"); err != nil || !cfg.SeccompDefault {
		t.Errorf("seccomp_default = true: %v, %v", cfg.SeccompDefault, err)
	}
	if _, err = parse(t, "seccomp_default = \"yes\"\n"); err == nil {
		t.Error("a string seccomp_default was accepted")
	}
}
