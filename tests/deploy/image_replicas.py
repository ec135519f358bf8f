"""``make deploy-test``: the built image's own filesystem serves two replicas on a team stack.

Containers cannot be started on these machines (the OCI runtime is refused ``setrlimit`` and
cgroups), so the image is mounted (``podman image mount``, read-only) and its entrypoint,
environment, user and working folder, as ``podman image inspect`` gives them, run under
``chroot``. Each replica runs in its own mount namespace (``unshare --mount``) holding what a
container runtime would give it: /proc, /dev, and fresh writable /tmp and working folder
(tmpfs, as the Kubernetes manifests mount emptyDir volumes there). The namespace and its mounts
end with the replica's process, so nothing is left mounted on the host.

Against a team stack (tests/support/devstack.py: PostgreSQL, moto S3, MLflow server) this
registers two versions, serves the first from both replicas, sends predictions, promotes the
second while requests keep flowing, checks both replicas serve it with no failed request, and
cleans up. Run as root (podman image mount, chroot, unshare):

    python -m tests.deploy.image_replicas --image localhost/modelyard:0.1.0
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import warnings
from pathlib import Path
from typing import Any

from tests.support.devstack import Stack, free_port

READY_TIMEOUT = 240.0  # two replicas import MLflow and load a model on two shared cores
RELOAD_TIMEOUT = 60.0
POLL_INTERVAL = 1.0
TOKEN = uuid.uuid4().hex  # the replicas require it: the probes and clients send it


def log(message: str) -> None:
    print(f"[deploy-test {time.strftime('%H:%M:%S')}] {message}", flush=True)


def podman(*args: str) -> str:
    done = subprocess.run(["podman", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"podman {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout.strip()


def image_config(image: str) -> dict[str, Any]:
    [info] = json.loads(podman("image", "inspect", image))
    # podman puts the HEALTHCHECK beside Config, not in it.
    return dict(info["Config"]) | {"Id": info["Id"], "Size": info["Size"],
                                   "Healthcheck": info.get("Healthcheck")}


class Replica:
    """One ``modelyard serve`` from the mounted image: its own mount namespace, under chroot."""

    def __init__(self, number: int, root: str, config: dict[str, Any], args: list[str],
                 env: dict[str, str], logs: Path) -> None:
        self.number = number
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = logs / f"replica-{number}.log"
        user = config.get("User") or "0:0"
        uid, _, gid = user.partition(":")
        workdir = config.get("WorkingDir") or "/"
        command = [*config["Entrypoint"], *args, "--host", "127.0.0.1",
                   "--port", str(self.port)]
        q = shlex.quote
        # What a runtime gives a container: /proc, /dev, a fresh /tmp and working folder. The
        # image's own root stays read-only, as readOnlyRootFilesystem keeps it in the manifests.
        script = " && ".join([
            f"mount -t proc proc {q(root)}/proc",
            f"mount --rbind /dev {q(root)}/dev",
            f"mount -t tmpfs -o mode=1777 tmpfs {q(root)}/tmp",
            f"mount -t tmpfs -o uid={uid},gid={gid or uid},mode=0750 tmpfs "
            f"{q(root + workdir)}",
            f"exec chroot --userspec={uid}:{gid or uid} {q(root)} "
            f"env -C {q(workdir)} {' '.join(q(c) for c in command)}",
        ])
        self.out = self.log_path.open("wb")
        self.process = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
            env=env, stdout=self.out, stderr=subprocess.STDOUT, start_new_session=True)

    def get(self, path: str) -> Any:
        import httpx

        return httpx.get(f"{self.url}{path}", timeout=10,
                         headers={"Authorization": f"Bearer {TOKEN}"})

    def tail(self, lines: int = 30) -> str:
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)  # the replica we started, and only it
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        self.out.close()


def healthcheck(root: str, config: dict[str, Any], replica: Replica,
                env: dict[str, str]) -> int:
    """The image's own HEALTHCHECK command, run under chroot against one replica: its exit
    code. The check asks port 8080, the image's default; the replicas here listen on free
    ports, so that one number is put in its place."""
    test = list(config["Healthcheck"]["Test"])
    assert test[0] == "CMD", test
    command = [part.replace("127.0.0.1:8080", f"127.0.0.1:{replica.port}") for part in test[1:]]
    assert command != test[1:], "the health check no longer asks 127.0.0.1:8080"
    user = config.get("User") or "0:0"
    done = subprocess.run(["chroot", f"--userspec={user}", root, "env", "-C", "/",
                           *command], env=env, capture_output=True, timeout=60, check=False)
    return done.returncode


def wait_ready(replicas: list[Replica]) -> None:
    import httpx

    deadline = time.monotonic() + READY_TIMEOUT
    waiting = list(replicas)
    while waiting:
        for replica in list(waiting):
            if replica.process.poll() is not None:
                raise SystemExit(f"replica {replica.number} exited "
                                 f"({replica.process.returncode}):\n{replica.tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if replica.get("/ready").status_code == 200:
                    waiting.remove(replica)
        if time.monotonic() > deadline:
            raise SystemExit("not ready in time:\n" + "\n".join(r.tail() for r in waiting))
        time.sleep(0.3)


class Load:
    """Predictions sent to every replica until stopped: each answer and the version it came
    from are kept, so a request failed at any moment (a reload included) is counted."""

    def __init__(self, replicas: list[Replica], records: list[dict[str, float]],
                 expected: dict[str, list[Any]]) -> None:
        self.replicas = replicas
        self.records = records
        self.expected = expected  # version -> the predictions it must give
        self.answered: dict[int, dict[str, int]] = {r.number: {} for r in replicas}
        self.failed: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(r,), daemon=True)
                         for r in replicas]

    def _run(self, replica: Replica) -> None:
        import httpx

        with httpx.Client(base_url=replica.url, timeout=30,
                          headers={"Authorization": f"Bearer {TOKEN}"}) as client:
            while not self._stop.is_set():
                try:
                    reply = client.post("/invocations",
                                        json={"dataframe_records": self.records})
                except httpx.HTTPError as exc:
                    self.failed.append(f"replica {replica.number}: {exc!r}")
                    continue
                version = reply.headers.get("x-model-version", "?")
                if reply.status_code != 200:
                    self.failed.append(f"replica {replica.number}: {reply.status_code} "
                                       f"{reply.text[:200]}")
                elif reply.json()["predictions"] != self.expected.get(version):
                    self.failed.append(f"replica {replica.number}: version {version} "
                                       "answered other predictions than its model")
                counts = self.answered[replica.number]
                counts[version] = counts.get(version, 0) + 1

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)

    def total(self) -> int:
        return sum(sum(c.values()) for c in self.answered.values())


def train() -> tuple[Any, Any, Any]:
    import pandas as pd
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression

    features, target = make_classification(n_samples=200, n_features=4, random_state=0)
    frame = pd.DataFrame(features, columns=["tenure", "charges", "calls", "age"])
    first = LogisticRegression(C=0.01).fit(frame, target)
    second = LogisticRegression(C=100.0).fit(frame, 1 - target)  # answers differently
    return frame, first, second


def mounts_under(root: str) -> list[str]:
    with open("/proc/self/mounts") as mounts:
        return [line.split()[1] for line in mounts if line.split()[1].startswith(root + "/")]


def run(image: str, started: float) -> None:
    config = image_config(image)
    log(f"image built: {image} {config['Id'][:12]} ({config['Size'] / 1e9:.2f} GB), "
        f"user {config.get('User')}, entrypoint {config['Entrypoint']}")
    root = podman("image", "mount", image)
    replicas: list[Replica] = []
    logs = Path(tempfile.mkdtemp(prefix="modelyard-deploy-test-"))
    try:
        with Stack() as stack:
            log(f"team stack up: MLflow {stack.tracking_uri}, S3 {stack.s3_endpoint_url} "
                f"({sum(stack.timings.values()):.0f} s)")
            os.environ.update(stack.env())  # this script's own registry client
            from modelyard import Yard

            yard = Yard()
            name = f"deploy-{uuid.uuid4().hex[:8]}"
            frame, first_model, second_model = train()
            example = frame.head(3)
            first = yard.register(first_model, name, input_example=example).version
            yard.promote(name, first, to="production", force=True, reason="deploy-test")
            second = yard.register(second_model, name, input_example=example).version
            yard.promote(name, second, to="staging", reason="deploy-test")
            rows = frame.head(8)
            records = [{k: float(v) for k, v in row.items()}
                       for row in rows.to_dict(orient="records")]
            expected = {str(first): first_model.predict(rows).tolist(),
                        str(second): second_model.predict(rows).tolist()}
            assert expected[str(first)] != expected[str(second)]

            # Only what the image declares and the stack hands a client: no host variable.
            env = dict(e.split("=", 1) for e in config.get("Env") or [])
            env.update(stack.env(), MODELYARD_SERVE_TOKEN=TOKEN)
            args = ["serve", name, "--poll-interval", str(POLL_INTERVAL),
                    "--log-level", "warning"]
            try:
                t0 = time.monotonic()
                replicas = [Replica(n, root, config, args, env, logs) for n in (1, 2)]
                wait_ready(replicas)
                versions = {r.number: r.get("/version").json() for r in replicas}
                assert all(str(v["version"]) == str(first) for v in versions.values()), versions
                log(f"replicas ready: 2 from the image under chroot (pids "
                    f"{', '.join(str(v['pid']) for v in versions.values())}) serving {name} "
                    f"version {first} (semver {versions[1]['semver']}, runtime "
                    f"{versions[1]['runtime']}) in {time.monotonic() - t0:.1f} s")
                # The image's HEALTHCHECK passes with the replica's token and fails without.
                with_token = healthcheck(root, config, replicas[0], env)
                without = healthcheck(root, config, replicas[0],
                                      {k: v for k, v in env.items()
                                       if k != "MODELYARD_SERVE_TOKEN"})
                if with_token != 0 or without == 0:
                    raise SystemExit(f"the image's health check: exit {with_token} with the "
                                     f"token, {without} without it")
                log(f"image HEALTHCHECK on replica 1: exit 0 with the serving token, "
                    f"{without} without it")

                with Load(replicas, records, expected) as load:
                    while min(sum(c.values()) for c in load.answered.values()) < 20:
                        time.sleep(0.05)
                        if load.failed:
                            break
                    before = load.total()
                    log(f"predictions answered: {before} requests of 8 rows over both replicas "
                        f"({load.answered}), {len(load.failed)} failed")
                    promoted = time.monotonic()
                    yard.promote(name, second, to="production", reason="deploy-test")
                    seen: dict[int, float] = {}
                    while len(seen) < len(replicas):
                        for r in replicas:
                            if r.number not in seen and str(r.get("/version").json()[
                                    "version"]) == str(second):
                                seen[r.number] = time.monotonic() - promoted
                        if time.monotonic() - promoted > RELOAD_TIMEOUT:
                            raise SystemExit(f"promotion not seen by every replica: {seen}")
                        time.sleep(0.1)
                    time.sleep(2 * POLL_INTERVAL)  # requests keep flowing after the switch
                moved = {n: c.get(str(second), 0) for n, c in load.answered.items()}
                log(f"promotion seen by both: version {second} on replica 1 {seen[1]:.1f} s "
                    f"after the promote call began, replica 2 after {seen[2]:.1f} s (poll interval "
                    f"{POLL_INTERVAL:g} s); {load.total()} requests in all, {len(load.failed)} "
                    f"failed; answered by the new version: {moved}")
                if load.failed:
                    raise SystemExit("failed requests:\n" + "\n".join(load.failed[:10]))
                if not all(moved.values()):
                    raise SystemExit(f"a replica never answered with the new version: {moved}")
            finally:  # before the stack stops: a replica outliving its registry logs errors
                for replica in replicas:
                    replica.stop()
    finally:
        for replica in replicas:  # stopped already unless the stack failed
            replica.stop()
        podman("image", "unmount", image)
        left = mounts_under(root)
        if left:
            raise SystemExit(f"mounts left under the image root: {left}")
    log(f"cleaned up: {len(replicas)} replicas stopped, their mount namespaces gone, image "
        f"unmounted, team stack stopped (logs in {logs})")
    log(f"deploy-test passed in {time.time() - started:.0f} s (image build included)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image", required=True)
    parser.add_argument("--started", type=float, default=None,
                        help="When `make deploy-test` started (epoch seconds), for the total.")
    options = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("deploy-test runs as root (podman image mount, chroot, unshare)")
    # MLflow's hint about the integer labels of the example models: noise in this log.
    warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer")
    run(options.image, options.started or time.time())


if __name__ == "__main__":
    main()
