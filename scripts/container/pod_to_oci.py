#!/usr/bin/env python3
"""Applies a container of a pod the chart renders to an OCI runtime config (config.json).

scripts/check-container.sh runs the image with crun "as the kubelet would": this script takes
the pod spec from `helm template` output and sets on the bundle's config.json (the one umoci
made from the image) what the kubelet and a CRI runtime (containerd/CRI-O) would set:

- user: runAsUser/runAsGroup (container over pod over image), fsGroup and supplementalGroups as
  additional groups; runAsNonRoot refused for uid 0 or a non-numeric image user, as the kubelet
  refuses to start such a container;
- readOnlyRootFilesystem, allowPrivilegeEscalation (noNewPrivileges), privileged (refused);
- capabilities: the CRI runtimes' default set, minus `drop` (ALL empties it), plus `add`;
- seccompProfile RuntimeDefault: the runtime's default profile, here containers-common's
  (/usr/share/containers/seccomp.json, what CRI-O and podman use), reduced to this
  architecture and these capabilities the way they do it; Unconfined: none;
- resources.limits.memory as the memory cgroup limit;
- envFrom ConfigMaps and literal env of the rendered manifests; command/args;
- volumeMounts, each bound from a host directory given with --volume NAME=DIR, read-only where
  the pod says so;
- the host's network namespace (the test broker listens on 127.0.0.1).

Usage: pod_to_oci.py RENDERED.yaml CONFIG.json --kind Deployment|Pod --name NAME
         --container NAME [--volume NAME=DIR]... [--arg-replace OLD=NEW]... [--env K=V]...
Rewrites CONFIG.json in place; prints what it applied. Exits 1 with a message on what the
kubelet would refuse.
"""

import argparse
import json
import os
import platform
import resource
import sys

import yaml

SECCOMP_PROFILE = "/usr/share/containers/seccomp.json"
# containerd's and CRI-O's default capabilities (containerd oci/spec.go defaultUnixCaps).
DEFAULT_CAPS = [
    "CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "MKNOD", "NET_RAW", "SETGID", "SETUID",
    "SETFCAP", "SETPCAP", "NET_BIND_SERVICE", "SYS_CHROOT", "KILL", "AUDIT_WRITE",
]
SECCOMP_ARCH = {"x86_64": ("SCMP_ARCH_X86_64", "amd64"), "aarch64": ("SCMP_ARCH_AARCH64", "arm64")}
UNITS = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}


class Refused(Exception):
    """What the kubelet would refuse to run."""


def quantity_bytes(quantity):
    text = str(quantity)
    for suffix, factor in UNITS.items():
        if text.endswith(suffix):
            return int(float(text[: -len(suffix)]) * factor)
    return int(text)


def find(docs, kind, name):
    for doc in docs:
        if doc and doc.get("kind") == kind and doc["metadata"]["name"] == name:
            return doc
    raise Refused(f"no {kind} {name} in the rendered manifests")


def seccomp_runtime_default(caps):
    """containers-common's default profile as an OCI seccomp section for this arch and caps."""
    with open(SECCOMP_PROFILE) as f:
        profile = json.load(f)
    scmp_arch, go_arch = SECCOMP_ARCH[platform.machine()]
    arches = []
    for entry in profile.get("archMap", []):
        if entry["architecture"] == scmp_arch:
            arches = [entry["architecture"], *entry.get("subArchitectures", [])]
    syscalls = []
    for rule in profile["syscalls"]:
        inc, exc = rule.get("includes", {}), rule.get("excludes", {})
        if inc.get("caps") and not set(inc["caps"]) <= caps:
            continue
        if inc.get("arches") and go_arch not in inc["arches"]:
            continue
        if exc.get("caps") and set(exc["caps"]) & caps:
            continue
        if exc.get("arches") and go_arch in exc["arches"]:
            continue
        syscalls.append({k: rule[k] for k in ("names", "action", "args", "errnoRet") if rule.get(k) is not None})
    section = {"defaultAction": profile["defaultAction"], "architectures": arches, "syscalls": syscalls}
    if "defaultErrnoRet" in profile:
        section["defaultErrnoRet"] = profile["defaultErrnoRet"]
    return section


def effective(key, container_sc, pod_sc):
    value = container_sc.get(key)
    return pod_sc.get(key) if value is None else value


def apply_security(config, pod, container, applied):
    pod_sc = pod.get("securityContext") or {}
    sc = container.get("securityContext") or {}
    if sc.get("privileged"):
        raise Refused("privileged container")
    user = config["process"]["user"]
    uid = effective("runAsUser", sc, pod_sc)
    gid = effective("runAsGroup", sc, pod_sc)
    if uid is not None:
        user["uid"] = uid
    if gid is not None:
        user["gid"] = gid
    if effective("runAsNonRoot", sc, pod_sc):
        # The kubelet needs a numeric uid to verify this; umoci resolved the image's USER.
        if user.get("uid", 0) == 0:
            raise Refused("runAsNonRoot is set but the container would run as uid 0")
    groups = list(pod_sc.get("supplementalGroups") or [])
    if pod_sc.get("fsGroup") is not None:
        groups.append(pod_sc["fsGroup"])
    user["additionalGids"] = groups
    applied.append(f"uid {user['uid']}, gid {user['gid']}, groups {groups}")

    config["root"]["readonly"] = bool(sc.get("readOnlyRootFilesystem"))
    config["process"]["noNewPrivileges"] = sc.get("allowPrivilegeEscalation") is False
    applied.append(f"read-only root {config['root']['readonly']}, noNewPrivileges {config['process']['noNewPrivileges']}")

    cap_rules = sc.get("capabilities") or {}
    drop = set(cap_rules.get("drop") or [])
    caps = set() if "ALL" in drop else set(DEFAULT_CAPS) - drop
    caps |= set(cap_rules.get("add") or [])
    names = sorted("CAP_" + c for c in caps)
    config["process"]["capabilities"] = {k: names for k in ("bounding", "effective", "permitted")} | {
        "inheritable": [], "ambient": []}
    applied.append(f"capabilities {names or 'none'}")

    profile = (sc.get("seccompProfile") or pod_sc.get("seccompProfile") or {}).get("type", "Unconfined")
    if profile == "RuntimeDefault":
        config["linux"]["seccomp"] = seccomp_runtime_default(caps)
        applied.append(f"seccomp RuntimeDefault ({len(config['linux']['seccomp']['syscalls'])} rules of {SECCOMP_PROFILE})")
    elif profile == "Unconfined":
        config["linux"].pop("seccomp", None)
        applied.append("seccomp Unconfined")
    else:
        raise Refused(f"seccompProfile {profile} is not supported here")


def apply_process(config, docs, container, arg_replace, extra_env, applied):
    process = config["process"]
    if container.get("command"):
        process["args"] = list(container["command"])
    process["args"] += [arg_replace.get(a, a) for a in container.get("args") or []]
    env = {e.split("=", 1)[0]: e.split("=", 1)[1] for e in process.get("env", [])}
    for source in container.get("envFrom") or []:
        if "configMapRef" not in source:
            raise Refused(f"envFrom {source} is not supported here")
        data = find(docs, "ConfigMap", source["configMapRef"]["name"]).get("data") or {}
        env.update({k: str(v) for k, v in data.items()})
    for var in container.get("env") or []:
        if "value" not in var:
            raise Refused(f"env {var['name']} from a reference is not supported here")
        env[var["name"]] = str(var["value"])
    env.update(extra_env)
    process["env"] = [f"{k}={v}" for k, v in env.items()]
    # A CRI runtime passes on its own open-files limit (containerd's unit: no limit) rather than
    # umoci's 1024; the relay holds one descriptor per connection. Here: this host's hard limit.
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    process["rlimits"] = [{"type": "RLIMIT_NOFILE", "hard": nofile, "soft": nofile}]
    applied.append(f"args {process['args']}, {len(env)} env vars")

    limit = ((container.get("resources") or {}).get("limits") or {}).get("memory")
    if limit is not None:
        config["linux"].setdefault("resources", {})["memory"] = {"limit": quantity_bytes(limit)}
        applied.append(f"memory limit {limit} ({quantity_bytes(limit)} bytes)")


def apply_mounts(config, pod, container, volumes, applied):
    declared = {v["name"] for v in pod.get("volumes") or []}
    for mount in container.get("volumeMounts") or []:
        name = mount["name"]
        if name not in declared:
            raise Refused(f"volumeMount {name} has no volume")
        if name not in volumes:
            raise Refused(f"volume {name}: no host directory given (--volume {name}=DIR)")
        options = ["rbind", "nosuid", "nodev", "noexec", "ro" if mount.get("readOnly") else "rw"]
        config["mounts"].append({"destination": mount["mountPath"], "type": "bind", "source": volumes[name], "options": options})
        applied.append(f"volume {name} at {mount['mountPath']} ({options[-1]})")
    # Host network, as `hostNetwork: true` would: the test broker advertises 127.0.0.1.
    config["linux"]["namespaces"] = [n for n in config["linux"]["namespaces"] if n["type"] != "network"]
    config["hostname"] = config.get("hostname") or "bp-relay"
    # Output to the runtime's stdout (the log file), no terminal; a cgroup of its own.
    config["process"]["terminal"] = False
    config["linux"]["cgroupsPath"] = f"/bp-relay-check/{pod.get('_name', 'pod')}-{os.getpid()}"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("rendered")
    parser.add_argument("config")
    parser.add_argument("--kind", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--container", required=True)
    parser.add_argument("--volume", action="append", default=[])
    parser.add_argument("--arg-replace", action="append", default=[])
    parser.add_argument("--env", action="append", default=[])
    args = parser.parse_args()

    with open(args.rendered) as f:
        docs = list(yaml.safe_load_all(f))
    with open(args.config) as f:
        config = json.load(f)
    workload = find(docs, args.kind, args.name)
    pod = workload["spec"]["template"]["spec"] if args.kind != "Pod" else workload["spec"]
    pod["_name"] = args.name
    containers = [c for c in pod["containers"] if c["name"] == args.container]
    if not containers:
        raise Refused(f"{args.kind} {args.name} has no container {args.container}")
    applied = []
    try:
        apply_security(config, pod, containers[0], applied)
        apply_process(config, docs, containers[0], dict(a.split("=", 1) for a in args.arg_replace),
                      dict(e.split("=", 1) for e in args.env), applied)
        apply_mounts(config, pod, containers[0], dict(v.split("=", 1) for v in args.volume), applied)
    except Refused as refused:
        sys.exit(f"the kubelet would refuse {args.kind} {args.name}: {refused}")
    with open(args.config, "w") as f:
        json.dump(config, f, indent=2)
    for line in applied:
        print(line)


if __name__ == "__main__":
    try:
        main()
    except Refused as refused:
        sys.exit(str(refused))
