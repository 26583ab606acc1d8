"""Feeds the configuration a rendered chart gives the bp-relay container to the real binary's
`check-config`, so a chart value the binary does not understand fails CI.

    relay_accepts.py RENDERED.yaml BP_RELAY_BINARY

Reads the Deployment's container: its envFrom ConfigMap, its literal env and its args. Files the
chart mounts from Secrets (signing secrets, SASL password, CA, client certificate and key) are
stood in for by files of the same name in a temporary directory: throwaway text, and a
self-signed certificate and key made with openssl, so librdkafka can load the TLS files.
"""
import os
import subprocess
import sys
import tempfile

import yaml


def container_of(docs):
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    return next(c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "bp-relay")


def environment(docs, container):
    config_maps = {d["metadata"]["name"]: d.get("data") or {} for d in docs if d["kind"] == "ConfigMap"}
    env = {}
    for source in container.get("envFrom", []):
        env.update(config_maps[source["configMapRef"]["name"]])
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
    return env


def stand_in_files(env, mounts, workdir):
    """Points every BP_RELAY_* path under a mounted directory at a stand-in file."""
    cert, key = os.path.join(workdir, "tls.crt"), os.path.join(workdir, "tls.key")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=bp-relay-check",
         "-days", "1", "-keyout", key, "-out", cert],
        check=True, capture_output=True,
    )
    for name, value in env.items():
        if not any(value.startswith(mount.rstrip("/") + "/") for mount in mounts):
            continue
        path = os.path.join(workdir, os.path.basename(value))
        if value.endswith(".key"):
            content = open(key).read()
        elif value.endswith((".crt", ".pem")):
            content = open(cert).read()
        else:
            # One per file: the relay refuses one secret in both routes' signing lists.
            content = "stand-in-secret-%s\n" % os.path.basename(value)
        with open(path, "w") as handle:
            handle.write(content)
        env[name] = path


def main():
    rendered, binary = sys.argv[1], sys.argv[2]
    docs = [d for d in yaml.safe_load_all(open(rendered)) if d]
    container = container_of(docs)
    env = environment(docs, container)
    mounts = [m["mountPath"] for m in container.get("volumeMounts", [])]
    with tempfile.TemporaryDirectory() as workdir:
        stand_in_files(env, mounts, workdir)
        command = [binary, "check-config", *container.get("args", [])]
        result = subprocess.run(command, env={"PATH": os.environ.get("PATH", ""), **env}, capture_output=True, text=True)
    print((result.stdout + result.stderr).strip())
    names = sorted(k for k in env if k.startswith("BP_RELAY_"))
    print(f"checked {len(names)} BP_RELAY_* variables: {' '.join(names)}")
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
