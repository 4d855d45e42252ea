"""Private RabbitMQ nodes for tests that stop, kill or cluster a broker, without touching the shared one.

The machine's node (``rabbit@localhost`` on 5672) is shared by every test run; a test that needs to stop a node
starts its own here: own node name, AMQP and distribution ports (free ones, picked at start), data, logs and
config under ``base_dir``. Nodes started together share one ``HOME`` (so one Erlang cookie, written before any
node starts, which ``join_cluster`` and ``rabbitmqctl`` need).

Why the scripts under ``/usr/lib/rabbitmq/bin`` and not ``/usr/sbin/rabbitmq-server``: the latter switches to
the ``rabbitmq`` user and reads ``/etc/rabbitmq/rabbitmq-env.conf`` (which fixes the node name) and
``/etc/rabbitmq/rabbitmq.conf`` (which pins the listener to 5672); both are replaced per node through the
environment. Starting a node takes ~6 s of CPU (its Erlang VM booting RabbitMQ), so :func:`start_nodes` starts them
in parallel, and a node is taken as up once its AMQP port listens (``rabbitmqctl wait`` would be one more Erlang VM);
:func:`start_cluster` has the nodes after the first join it as they boot (peer discovery from the configuration) rather
than booting, stopping and restarting them (``join_cluster``: three ``rabbitmqctl`` calls and an app restart each).

Use::

    nodes = start_cluster(3, tmp_path)  # skips (fails under LIENTHONG_REQUIRE_SERVICES=1) without RabbitMQ/root
    ... nodes[0].url ... nodes[0].stop_app() ...
    stop_all(nodes)
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import time
import urllib.parse
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pika
import pika.exceptions

from tests.support import free_port, require

SBIN = Path("/usr/lib/rabbitmq/bin")
SERVER, CTL = SBIN / "rabbitmq-server", SBIN / "rabbitmqctl"
START_TIMEOUT_S = 60


def require_rabbitmq_server() -> None:
    """Skip (fail on CI) unless a RabbitMQ server can be started here as a private node."""
    if not (SERVER.exists() and CTL.exists()):
        require(f"rabbitmq-server is not installed ({SERVER} is missing)")
    if os.geteuid() != 0:
        require("private RabbitMQ nodes need root (the Erlang runtime and RabbitMQ's files are set up for it)")


@dataclass
class RabbitNode:
    """One private RabbitMQ node; ``home`` holds the Erlang cookie shared with the nodes it clusters with. With
    ``peers`` (node names), a node that boots on empty data joins the cluster of the first of them that runs."""

    name: str
    port: int
    dist_port: int
    dir: Path
    home: Path
    peers: tuple[str, ...] = ()

    @property
    def node(self) -> str:
        return f"{self.name}@localhost"

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/%2F"

    @property
    def pid_file(self) -> Path:
        return self.dir / "rabbit.pid"

    @property
    def log_file(self) -> Path:
        return self.dir / "log" / f"{self.node}.log"

    def env(self) -> dict[str, str]:
        """The environment of this node's server and of ``rabbitmqctl`` calls that target it."""
        return {
            **os.environ,
            "HOME": str(self.home),
            "RABBITMQ_CONF_ENV_FILE": "/dev/null",
            "RABBITMQ_CONFIG_FILE": str(self.dir / "rabbitmq.conf"),
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(self.dir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.dir / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.dir / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(self.pid_file),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "ERL_FLAGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        }

    def ctl(self, *args: str, timeout_s: float = 60) -> str:
        """``rabbitmqctl -n <this node> args…``; its output, or an AssertionError with the output and log tail."""
        done = subprocess.run(
            [str(CTL), "-n", self.node, *args], env=self.env(), capture_output=True, text=True, timeout=timeout_s,
            check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise AssertionError(
                f"rabbitmqctl -n {self.node} {' '.join(args)} failed ({done.returncode}):\n"
                f"{done.stdout}{done.stderr}\n--- log tail ---\n{self.log_tail()}"
            )
        return done.stdout

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def _write_config(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        lines = [f"listeners.tcp.local = 127.0.0.1:{self.port}", "loopback_users = none"]
        if self.peers:
            lines.append("cluster_formation.peer_discovery_backend = classic_config")
            lines += [f"cluster_formation.classic_config.nodes.{n} = {peer}" for n, peer in enumerate(self.peers, 1)]
        (self.dir / "rabbitmq.conf").write_text("\n".join(lines) + "\n")
        (self.dir / "enabled_plugins").write_text("[].\n")

    def launch(self) -> None:
        """Start the server in the background (returns at once; :meth:`wait` for it)."""
        self._write_config()
        subprocess.run([str(SERVER), "-detached"], env=self.env(), capture_output=True, timeout=30, check=True)

    def wait(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Until the node's app runs: its VM (the pid file's) listens on the node's AMQP port, which RabbitMQ opens
        at the end of its boot (a cluster member's once it has joined). Checked in ``/proc``, not with ``rabbitmqctl
        wait`` (an Erlang VM of its own, ~0.7 s of CPU); the listener must be this VM's, not whatever else may have
        taken the port since it was picked."""
        deadline = time.monotonic() + timeout_s
        while (pid := self.pid()) is None:  # -detached writes it a moment after returning
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.node} wrote no pid file in {timeout_s:g} s\n{self.log_tail()}")
            time.sleep(0.1)
        while not _listens(pid, self.port):
            if not _alive(pid):
                raise AssertionError(f"{self.node} exited while starting\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.node} did not listen on {self.port} in {timeout_s:g} s\n{self.log_tail()}")
            time.sleep(0.1)

    def start(self) -> None:
        """Start the node (again, after :meth:`stop` or :meth:`kill`: its data, and cluster membership, remain)."""
        self.pid_file.unlink(missing_ok=True)
        self.launch()
        self.wait()

    def stop_app(self) -> None:
        """Stop RabbitMQ on the node (clients are disconnected); the Erlang node stays up."""
        self.ctl("stop_app")

    def start_app(self) -> None:
        self.ctl("start_app")

    def stop(self) -> None:
        """Stop the node gracefully and wait for its process to exit."""
        self.ctl("stop", str(self.pid_file), timeout_s=90)

    def pid(self) -> int | None:
        try:
            return int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None

    def kill(self) -> None:
        """SIGKILL the node's Erlang VM (a crash, not a shutdown) and wait until it is gone."""
        _wait_gone(self._send_kill())

    def _send_kill(self) -> int | None:
        """SIGKILL the node's Erlang VM; its pid, ``None`` when it was not running."""
        pid = self.pid()
        if pid is None:
            return None
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return None
        return pid

    def add_vhosts(self, names: Sequence[str]) -> None:
        """Make virtual hosts ``names``, each with every permission for ``guest``, in one ``rabbitmqctl
        import_definitions`` call (``add_vhost`` and ``set_permissions`` are two calls per virtual host, each an
        Erlang VM of its own: ~0.7 s of CPU); returns once a client can open the last one."""
        definitions = self.dir / f"vhosts-{secrets.token_hex(4)}.json"
        definitions.write_text(json.dumps({
            "vhosts": [{"name": name} for name in names],
            "permissions": [{"user": "guest", "vhost": name, "configure": ".*", "write": ".*", "read": ".*"}
                            for name in names],
        }))  # fmt: skip
        self.ctl("import_definitions", str(definitions))
        if names:  # the command says the import may finish after it returns
            url = f"amqp://guest:guest@127.0.0.1:{self.port}/{urllib.parse.quote(names[-1], safe='')}"
            deadline = time.monotonic() + 15
            while True:
                try:
                    pika.BlockingConnection(pika.URLParameters(url)).close()
                    return
                except pika.exceptions.AMQPError as exc:
                    if time.monotonic() > deadline:
                        raise AssertionError(
                            f"{names[-1]} not usable on {self.node}: {exc}\n{self.log_tail()}"
                        ) from exc
                    time.sleep(0.1)

    def queues(self) -> list[str]:
        """Names of the queues of the default virtual host, as the node lists them."""
        out = self.ctl("list_queues", "name", "--quiet", "--no-table-headers")
        return sorted(line.strip() for line in out.splitlines() if line.strip())


def _wait_gone(pid: int | None, timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while pid is not None and _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)


def _listens(pid: int, port: int) -> bool:
    """Whether process ``pid`` holds a socket listening on TCP ``port`` of IPv4 (``/proc/net/tcp``, state 0A)."""
    try:
        with open("/proc/net/tcp") as table:
            inodes = {f"socket:[{f[9]}]" for f in (line.split() for line in table.readlines()[1:])
                      if f[3] == "0A" and int(f[1].rsplit(":", 1)[1], 16) == port}  # fmt: skip
        if not inodes:
            return False
        fd_dir = Path(f"/proc/{pid}/fd")
        return any(os.readlink(fd_dir / fd) in inodes for fd in os.listdir(fd_dir))
    except OSError:  # the process is gone, or one of its descriptors closed while they were read
        return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie child of ours counts as gone
        return os.waitpid(pid, os.WNOHANG) == (0, 0)
    except ChildProcessError:
        return True


def start_nodes(count: int, base_dir: Path, *, peers: tuple[str, ...] = (), first_index: int = 0) -> list[RabbitNode]:
    """Start ``count`` private nodes in parallel under ``base_dir`` (sharing one cookie), not clustered unless
    ``peers`` names running nodes for them to join; ``first_index`` numbers their folders after nodes started
    before under the same ``base_dir``."""
    if count < 1:
        return []
    require_rabbitmq_server()
    home = base_dir / "home"
    home.mkdir(parents=True, exist_ok=True)
    cookie = home / ".erlang.cookie"
    if not cookie.exists():  # written once, before any node, so parallel starts agree on it
        cookie.write_text(secrets.token_hex(20).upper())
        cookie.chmod(0o400)
    tag = f"lt{os.getpid()}{secrets.token_hex(2)}"
    nodes = [RabbitNode(f"{tag}n{i}", free_port(), free_port(), base_dir / f"node{i}", home, peers)
             for i in range(first_index, first_index + count)]  # fmt: skip
    try:
        with ThreadPoolExecutor(max_workers=count) as pool:
            list(pool.map(RabbitNode.launch, nodes))
            list(pool.map(RabbitNode.wait, nodes))
    except BaseException:
        stop_all(nodes)
        raise
    return nodes


def start_cluster(count: int, base_dir: Path) -> list[RabbitNode]:
    """Start ``count`` private nodes under ``base_dir`` as one cluster: the first alone, then the others in parallel,
    each joining the first as it boots (``peers``). Returns once every one runs as a member."""
    (first,) = start_nodes(1, base_dir)
    try:
        others = start_nodes(count - 1, base_dir, peers=(first.node,), first_index=1)
    except BaseException:
        stop_all([first])
        raise
    return [first, *others]


def join_cluster(nodes: list[RabbitNode]) -> None:
    """Join every node after the first to the first's cluster (``stop_app``, ``join_cluster``, ``start_app``)."""
    first = nodes[0]
    for node in nodes[1:]:
        node.stop_app()
        node.ctl("join_cluster", first.node)
        node.start_app()  # returns once the app runs again, now as a cluster member


def stop_all(nodes: list[RabbitNode], *, remove: bool = False) -> None:
    """Kill every node (they are throw-away: no graceful shutdown needed); ``remove`` deletes their files too."""
    for pid in [node._send_kill() for node in nodes]:  # all signalled first: they exit side by side
        _wait_gone(pid)
    if remove:
        for node in nodes:
            shutil.rmtree(node.dir, ignore_errors=True)
