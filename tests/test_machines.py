"""Several machines for real: two network namespaces joined by a veth pair, each with its
own address and only its own loopback, stand for two machines (issue 33).

The two-machine test runs the README's launcher command, taken from the README's text,
on both; the store test runs `--workers 2` on one "machine" and knocks from the other.
Both need root (to make namespaces) and skip with the reason without it; CI runs as root.
"""

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from recognize_digits.engines import network
from recognize_digits.plumbing.fast_cpu import CORES

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent  # the virtual environment's python and recognize-digits
TIMEOUT = 240  # s, for a whole run; a healthy one takes about 15 s here


def ip(*args, check=True):
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30,
                          check=check)


def netns_pids(ns):
    return ip("netns", "pids", ns, check=False).stdout.split()


@pytest.fixture(scope="module")
def machines():
    """Two namespaces, names and addresses unique to this process (10.213.x.1 and .2), a
    veth pair between them; yields ``[(namespace, address, interface), ...]``; every
    process in them is killed and both are deleted afterwards, whatever happened."""
    if os.geteuid() != 0:
        pytest.skip("making network namespaces needs root (CI runs as root)")
    if shutil.which("ip") is None:
        pytest.skip("no `ip` command (Debian's iproute2)")
    pid, subnet = os.getpid(), f"10.213.{os.getpid() % 250 + 1}"
    nodes = [(f"rd{pid}{side}", f"{subnet}.{n}", f"rd{pid}{side}")
             for n, side in ((1, "a"), (2, "b"))]
    made = []
    try:
        for ns, _, _ in nodes:
            result = ip("netns", "add", ns, check=False)
            if result.returncode:
                pytest.skip(f"`ip netns add` failed: {result.stderr.strip()}")
            made.append(ns)
        (a, _, dev_a), (b, _, dev_b) = nodes
        ip("link", "add", dev_a, "type", "veth", "peer", "name", dev_b)
        for ns, address, dev in nodes:
            ip("link", "set", dev, "netns", ns)
            ip("-n", ns, "addr", "add", f"{address}/24", "dev", dev)
            ip("-n", ns, "link", "set", dev, "up")
            ip("-n", ns, "link", "set", "lo", "up")
        yield nodes
    finally:
        for ns in made:
            for p in netns_pids(ns):
                try:
                    os.kill(int(p), signal.SIGKILL)
                except ProcessLookupError:
                    pass
            ip("netns", "del", ns, check=False)  # the veth pair goes with them
        left = ip("netns", "list", check=False).stdout
        assert not [ns for ns in made if re.search(rf"^{ns}\b", left, re.M)], left


def readme_command():
    """The README's several-machines command, as an argument list."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = next(block for block in re.findall(r"```bash\n(.*?)```", readme, re.S)
                 if "paddle.distributed.launch --nnodes" in block)
    lines = [line for line in block.splitlines() if not line.lstrip().startswith("#")]
    return shlex.split(" ".join(lines).replace("\\ ", " "))


def replace(command, option, value):
    """``command`` with ``option``'s value replaced; the option must be there, so that a
    README that changed makes this test fail, not test something else."""
    assert option in command, f"the README's command has no {option}: {command}"
    i = command.index(option)
    return command[:i + 1] + [value] + command[i + 2:]


def start(ns, command, cwd, env_extra=None):
    env = {k: v for k, v in os.environ.items() if k != "GLOO_SOCKET_IFNAME"}  # left to us
    env.update(PATH=f"{BIN}{os.pathsep}{env['PATH']}", PYTHONUNBUFFERED="1", **(env_extra or {}))
    cwd.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(["ip", "netns", "exec", ns, "nice", "-n", "15", *command], cwd=cwd,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True,
                            # every core back: a test process that has trained is bound to one
                            preexec_fn=CORES and (lambda: os.sched_setaffinity(0, CORES)))


def collect(process, lines):
    """Read ``process``'s output into ``lines`` as it comes (a thread)."""
    thread = threading.Thread(target=lambda: lines.extend(process.stdout), daemon=True)
    thread.start()
    return thread


def finish(processes, deadline):
    """Wait for every process until ``deadline``; kill all (their process groups) if one is
    late. Returns their exit codes."""
    try:
        return [p.wait(timeout=max(1, deadline - time.monotonic())) for p in processes]
    except subprocess.TimeoutExpired:
        for p in processes:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        raise AssertionError(f"not finished within {TIMEOUT} s")


def predicted_digit(model_dir):
    out = subprocess.run([str(BIN / "recognize-digits"), "predict",
                          str(ROOT / "image" / "infer_3.png"), "--model-dir", str(model_dir)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    return int(re.search(r"infer_3\.png: (\d)", out.stdout).group(1))


def test_the_readme_s_command_trains_across_two_machines(machines, tmp_path):
    (ns_a, address_a, dev_a), (ns_b, address_b, dev_b) = machines
    command = readme_command()
    port = command[command.index("--master") + 1].rsplit(":", 1)[1]
    command = replace(command, "--master", f"{address_a}:{port}")
    # one worker a machine, the softmax regression on the bundled sample, seed 0 (which
    # reads infer_3.png surely): quick, and the same launcher and options otherwise
    command = replace(replace(command, "--nproc_per_node", "1"), "--model", "softmax")
    data = command.index("--data-dir")
    command = command[:data] + ["--sample"] + command[data + 2:] + ["--epochs", "1", "--seed", "0"]
    runs = {}
    deadline = time.monotonic() + TIMEOUT
    for ns, address, name in ((ns_a, address_a, "a"), (ns_b, address_b, "b")):
        process = start(ns, replace(command, "--host", address), tmp_path / name)
        runs[name] = process, [], []
        runs[name][2].append(collect(process, runs[name][1]))
    codes = finish([p for p, _, _ in runs.values()], deadline)
    for _, _, (thread,) in runs.values():
        thread.join(10)
    out = {name: "".join(lines) for name, (_, lines, _) in runs.items()}
    assert codes == [0, 0], out

    # gloo's interface chosen on each machine, GLOO_SOCKET_IFNAME being unset
    assert f"Workers talk over {dev_a}: this machine reaches the master {address_a}" in out["a"]
    assert f"Workers talk over {dev_b}: this machine reaches the master {address_a}" in out["b"]
    # one model, on the first machine; the second says where it is
    save_dir = command[command.index("--save-dir") + 1]
    assert (tmp_path / "a" / save_dir / "model.json").is_file()
    assert not (tmp_path / "b" / save_dir).exists()
    assert f"Saved the best pass's inference model in {save_dir}" in out["a"]
    assert "Saved the best" not in out["b"]
    assert (f"Worker 1 of 2 finished; worker 0 saved the best pass's inference model in "
            f"{save_dir} on its machine ({address_a})") in out["b"]
    metrics = json.loads((tmp_path / "a" / save_dir / "metrics.json").read_text())
    assert metrics["workers"] == 2
    accuracy = metrics["passes"][metrics["best_pass"]]["test_acc"]
    assert f"The classification accuracy is {100 * accuracy:.2f}%" in out["a"]
    assert predicted_digit(tmp_path / "a" / save_dir) == 3
    assert not netns_pids(ns_a) and not netns_pids(ns_b), "a process was left running"


def listening_ports(ns):
    """The TCP ports listened on in namespace ``ns``, each with its local address."""
    lines = ip("netns", "exec", ns, "ss", "-ltnH").stdout.splitlines()
    return [(line.split()[3].rsplit(":", 1)[0], int(line.split()[3].rsplit(":", 1)[1]))
            for line in lines]


def knock(ns, address, ports):
    """From namespace ``ns``, whether a TCP connection to each of ``address:ports`` is
    accepted (one process for all: the training must still run when the last is tried)."""
    probe = (f"import socket\nfor port in {sorted(ports)!r}:\n    try:\n"
             f"        socket.create_connection(({address!r}, port), 3).close()\n"
             f"        print(port, 'accepted')\n    except OSError as e:\n"
             f"        print(port, type(e).__name__)")
    lines = ip("netns", "exec", ns, sys.executable, "-c", probe).stdout.split("\n")
    return dict((int(port), answer) for port, answer in (line.split() for line in lines if line))


def test_one_machine_s_workers_keep_their_store_and_gloo_from_the_network(machines, tmp_path):
    (ns_a, address_a, _), (ns_b, _, _) = machines
    # LeNet-5 for a few passes: long enough to try every port while it trains
    process = start(ns_a, ["recognize-digits", "train", "--model", "cnn", "--graph",
                           "dynamic", "--workers", "2", "--sample", "--epochs", "3",
                           "--save-dir", "model"], tmp_path)
    lines = []
    collect(process, lines)
    deadline = time.monotonic() + TIMEOUT
    try:
        # once training runs, every worker has joined: knock on every port listened on
        while not any(line.startswith("Pass 0:") for line in lines):
            assert process.poll() is None, "".join(lines)
            assert time.monotonic() < deadline, "".join(lines)
            time.sleep(0.1)
        listening = listening_ports(ns_a)
        answers = knock(ns_b, address_a, {port for _, port in listening})
        still_training = process.poll() is None  # else a refusal would prove nothing
    finally:
        codes = finish([process], deadline)
    assert codes == [0], "".join(lines)
    assert still_training, "the training ended before every port was tried"
    assert "Workers talk over lo: every worker is on this machine" in "".join(lines)
    assert listening and answers == {port: "ConnectionRefusedError" for _, port in listening}, \
        (listening, answers)
    # the store is still there, bound to loopback (and the training went on, above)
    assert any(local.endswith("%lo") for local, _ in listening), listening
    metrics = json.loads((tmp_path / "model" / "metrics.json").read_text())
    assert metrics["workers"] == 2 and len(metrics["passes"]) == 3


def test_a_gloo_socket_ifname_the_user_set_wins():
    env = {"PADDLE_MASTER": "127.0.0.1:6170", "GLOO_SOCKET_IFNAME": "eth7"}
    assert network.choose_interface(env) == ("eth7", False)
    assert env["GLOO_SOCKET_IFNAME"] == "eth7"
    env = {"PADDLE_MASTER": "127.0.0.1:6170"}
    loopback = network.interface_to("127.0.0.1")
    if loopback is None:
        pytest.skip("no interface list here (not Linux)")
    assert network.choose_interface(env) == (loopback, True)
    assert env["GLOO_SOCKET_IFNAME"] == loopback


def test_a_store_bound_to_loopback_refuses_another_machine_and_serves_this_one(machines):
    """The mechanism alone, on a socket listening as Paddle's store does (0.0.0.0): before,
    the other machine connects; after keep_store_on(loopback), it is refused, and this
    machine still connects through loopback."""
    (ns_a, address_a, _), (ns_b, _, _) = machines
    server = ("import socket, sys\nfrom recognize_digits.engines import network\n"
              "s = socket.socket(); s.bind(('0.0.0.0', 0)); s.listen()\n"
              "print(s.getsockname()[1], flush=True); sys.stdin.readline()\n"
              "print(network.keep_store_on('lo', s.getsockname()[1]), flush=True)\n"
              "sys.stdin.readline()\n")
    process = subprocess.Popen(["ip", "netns", "exec", ns_a, sys.executable, "-c", server],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                               start_new_session=True)
    try:
        port = int(process.stdout.readline())
        assert knock(ns_b, address_a, [port]) == {port: "accepted"}
        process.stdin.write("\n")
        process.stdin.flush()
        assert process.stdout.readline().strip() == "True"
        assert knock(ns_b, address_a, [port]) == {port: "ConnectionRefusedError"}
        assert knock(ns_a, "127.0.0.1", [port]) == {port: "accepted"}
        # this machine's own network address too: only loopback addresses are served
        assert knock(ns_a, address_a, [port]) == {port: "ConnectionRefusedError"}
    finally:
        process.stdin.close()
        process.wait(30)
