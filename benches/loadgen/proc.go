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
	HWMKB uint64  `json:"hwm_kb"` // VmHWM: peak RSS of each process (since its last resetPeak), summed
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

// treePids lists root and its descendants (multi-process servers such as uvicorn with workers
// count as one system), root first; empty when root is not running.
func treePids(root int) []int {
	if _, ok := readStat(root); !ok {
		return nil
	}
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	children := map[int][]int{}
	for _, d := range dirs {
		pid, err := strconv.Atoi(filepath.Base(d))
		if err != nil {
			continue
		}
		if info, ok := readStat(pid); ok {
			children[info.ppid] = append(children[info.ppid], pid)
		}
	}
	pids := []int{}
	queue := []int{root}
	for len(queue) > 0 {
		pid := queue[0]
		queue = queue[1:]
		pids = append(pids, pid)
		queue = append(queue, children[pid]...)
	}
	return pids
}

// treeStats sums CPU time and memory over root and its descendants.
func treeStats(root int) (TreeStats, error) {
	pids := treePids(root)
	if len(pids) == 0 {
		return TreeStats{}, fmt.Errorf("process %d is not running", root)
	}
	var st TreeStats
	for _, pid := range pids {
		info, ok := readStat(pid)
		if !ok {
			continue
		}
		st.Procs++
		st.CPUS += float64(info.ticks) / userHZ
		rss, hwm := readMem(pid)
		st.RSSKB += rss
		st.HWMKB += hwm
	}
	return st, nil
}

// resetPeak sets VmHWM back to the current RSS for root and its descendants (writing 5 to
// /proc/PID/clear_refs), so the peak read after a run is that run's own peak.
func resetPeak(root int) {
	for _, pid := range treePids(root) {
		_ = os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0)
	}
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
