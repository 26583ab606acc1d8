package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// userHZ is the unit of utime/stime in /proc/PID/stat. The kernel reports these in USER_HZ,
// which is 100 on every Linux architecture this bench runs on (x86_64, arm64).
const userHZ = 100

// TreeStats is the sum over a process and all its descendants.
type TreeStats struct {
	Procs int     `json:"procs"`
	CPUS  float64 `json:"cpu_s"`  // utime+stime of every thread of every process, seconds
	RSSKB uint64  `json:"rss_kb"` // VmRSS
	HWMKB uint64  `json:"hwm_kb"` // VmHWM: peak RSS of each process, summed
}

type procInfo struct {
	ppid  int
	ticks uint64
}

// readStat parses /proc/PID/stat: the parent pid and utime+stime (all threads).
func readStat(pid int) (procInfo, bool) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procInfo{}, false
	}
	// The command name (field 2) may contain spaces and parentheses: split after the last ')'.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return procInfo{}, false
	}
	fields := strings.Fields(string(data[i+1:]))
	// fields[0] is field 3 (state): field n is fields[n-3].
	if len(fields) < 13 {
		return procInfo{}, false
	}
	ppid, _ := strconv.Atoi(fields[1])
	utime, _ := strconv.ParseUint(fields[11], 10, 64)
	stime, _ := strconv.ParseUint(fields[12], 10, 64)
	return procInfo{ppid: ppid, ticks: utime + stime}, true
}

// readMem returns VmRSS and VmHWM (kB) of a process.
func readMem(pid int) (rss, hwm uint64) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		var target *uint64
		switch {
		case strings.HasPrefix(line, "VmRSS:"):
			target = &rss
		case strings.HasPrefix(line, "VmHWM:"):
			target = &hwm
		default:
			continue
		}
		fs := strings.Fields(line)
		if len(fs) >= 2 {
			*target, _ = strconv.ParseUint(fs[1], 10, 64)
		}
	}
	return rss, hwm
}

// treeStats sums CPU time and memory over root and its descendants (multi-process servers such
// as uvicorn with workers count as one system).
func treeStats(root int) (TreeStats, error) {
	if _, ok := readStat(root); !ok {
		return TreeStats{}, fmt.Errorf("process %d is not running", root)
	}
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	children := map[int][]int{}
	infos := map[int]procInfo{}
	for _, d := range dirs {
		pid, err := strconv.Atoi(filepath.Base(d))
		if err != nil {
			continue
		}
		if info, ok := readStat(pid); ok {
			infos[pid] = info
			children[info.ppid] = append(children[info.ppid], pid)
		}
	}
	var st TreeStats
	queue := []int{root}
	for len(queue) > 0 {
		pid := queue[0]
		queue = queue[1:]
		info, ok := infos[pid]
		if !ok {
			continue
		}
		st.Procs++
		st.CPUS += float64(info.ticks) / userHZ
		rss, hwm := readMem(pid)
		st.RSSKB += rss
		st.HWMKB += hwm
		queue = append(queue, children[pid]...)
	}
	return st, nil
}

// selfCPU is this process's own utime+stime in seconds.
func selfCPU() float64 {
	info, _ := readStat(os.Getpid())
	return float64(info.ticks) / userHZ
}

func cmdProc(args []string) error {
	fs := flag.NewFlagSet("proc", flag.ExitOnError)
	pid := fs.Int("pid", 0, "root process id")
	fs.Parse(args)
	if *pid <= 0 {
		return fmt.Errorf("--pid is required")
	}
	st, err := treeStats(*pid)
	if err != nil {
		return err
	}
	return printJSON(st)
}
