package cri

import (
	"encoding/json"

	"github.com/berth-dev/berth/runtime/cdi"
)

// cdiInfo is Status(verbose)'s "cdi": the spec dirs, the devices known
// with the spec file each came from, and the spec files left out with why.
func cdiInfo(r *cdi.Registry) string {
	info := struct {
		SpecDirs []string          `json:"specDirs"`
		Devices  []cdi.Device      `json:"devices"`
		Errors   map[string]string `json:"errors,omitempty"`
	}{SpecDirs: r.SpecDirs(), Devices: r.Devices(), Errors: r.Errors()}
	if info.SpecDirs == nil {
		info.SpecDirs = []string{}
	}
	if info.Devices == nil {
		info.Devices = []cdi.Device{}
	}
	b, _ := json.Marshal(info)
	return string(b)
}
