// loadgen: the one load generator of benches/compare.sh. It sends distinct, correctly signed
// Authvia business-process deliveries to a relay over keep-alive HTTP/1.1 connections, in a
// closed loop (C connections, each sending sequentially) or an open loop (a fixed arrival rate,
// latency measured from each request's scheduled send time), then checks against Kafka that every
// 2xx answer names a record that is in Kafka. One JSON result per run on stdout.
//
//	loadgen run    --url URL --secret S --samples 'docs/examples/bp-*.json' --mode closed|open ...
//	loadgen topics --brokers B --partitions 6 TOPIC...   create fresh topics, wait for leaders
//	loadgen proc   --pid PID                             CPU and memory of a process tree (JSON)
//	loadgen warm-broker --topic T --duration D            produce flat out, to warm the broker up
//	loadgen attack --addr A --secret S ...               hold connections without delivering (attack.go)
//
// Bounded: every run stops sending after --warmup + --duration and waits at most --timeout for
// the answers still outstanding. It only talks to the address in --url (127.0.0.1 in the bench).
package main

import (
	"encoding/json"
	"fmt"
	"os"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "run":
		err = cmdRun(os.Args[2:])
	case "topics":
		err = cmdTopics(os.Args[2:])
	case "proc":
		err = cmdProc(os.Args[2:])
	case "warm-broker":
		err = cmdWarmBroker(os.Args[2:])
	case "attack":
		err = cmdAttack(os.Args[2:])
	case "help", "-h", "--help":
		usage()
	default:
		fmt.Fprintf(os.Stderr, "loadgen: unknown command %q\n", os.Args[1])
		usage()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "loadgen %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprint(os.Stderr, `usage:
  loadgen run    [flags]            one load run; 'loadgen run -h' lists the flags
  loadgen topics [flags] TOPIC...   create topics and wait until every partition has a leader
  loadgen proc   --pid PID          utime+stime, VmRSS and VmHWM summed over PID's process tree
  loadgen warm-broker --topic T --duration D   produce as fast as possible (JIT warm-up)
`)
	os.Exit(2)
}

func printJSON(v any) error {
	enc := json.NewEncoder(os.Stdout)
	return enc.Encode(v)
}
