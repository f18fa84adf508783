package filter

import "golang.org/x/sys/unix"

// nativeArch is this machine's seccomp_data.arch.
const nativeArch = unix.AUDIT_ARCH_X86_64

// newerSyscalls are syscalls of the runtime/default profile that the
// libseccomp of Debian 12 (2.5.4) cannot name, by native number.
var newerSyscalls = map[string]uint32{
	"uretprobe":         unix.SYS_URETPROBE,
	"statmount":         unix.SYS_STATMOUNT,
	"listmount":         unix.SYS_LISTMOUNT,
	"lsm_get_self_attr": unix.SYS_LSM_GET_SELF_ATTR,
	"lsm_set_self_attr": unix.SYS_LSM_SET_SELF_ATTR,
	"lsm_list_modules":  unix.SYS_LSM_LIST_MODULES,
	"mseal":             unix.SYS_MSEAL,
	"setxattrat":        unix.SYS_SETXATTRAT,
	"getxattrat":        unix.SYS_GETXATTRAT,
	"listxattrat":       unix.SYS_LISTXATTRAT,
	"removexattrat":     unix.SYS_REMOVEXATTRAT,
	"open_tree_attr":    unix.SYS_OPEN_TREE_ATTR,
	"file_getattr":      unix.SYS_FILE_GETATTR,
	"file_setattr":      unix.SYS_FILE_SETATTR,
}
