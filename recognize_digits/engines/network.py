"""How the workers of a data-parallel training reach each other (see :mod:`.parallel`).

Two things Paddle leaves to the machine's configuration, which this module settles:

* Gloo (the CPU backend) binds each worker's sockets to one address and tells the others
  to connect there. Unless ``GLOO_SOCKET_IFNAME`` names an interface it takes the address
  the host name resolves to, which is 127.0.0.1 on many machines (``127.0.0.1 HOSTNAME`` in
  /etc/hosts): the other machines then "connect [127.0.0.1]:PORT" and are refused.
  :func:`choose_interface` names the interface through which this machine reaches the
  master (the other machines reach this one through it too: the same network), or the
  loopback one when every worker is on this machine.
* Worker 0 holds Paddle's TCP store, which every worker connects to while they start.
  Paddle's C++ makes it listen on every address (0.0.0.0), with no setting to change it.
  Once they have joined, :func:`keep_store_on` binds the listening socket to that same
  interface: with every worker on this machine no other machine can connect to it, and
  with several machines only those on the workers' network can.

Linux's interfaces are read with ioctl(2); elsewhere nothing is chosen, and gloo does as
it does by default.
"""

import ipaddress
import os
import socket
import struct

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

SIOCGIFADDR = 0x8915  # Linux: an interface's IPv4 address


def master(environ=None):
    """``(host, port)`` of the master, the store's address, from a worker's environment,
    read in the order Paddle's ``init_parallel_env`` reads it (MASTER_ADDR and MASTER_PORT,
    PADDLE_MASTER, the first of PADDLE_TRAINER_ENDPOINTS); ``(None, None)`` in a process of
    its own."""
    env = os.environ if environ is None else environ
    if env.get("MASTER_ADDR") and env.get("MASTER_PORT"):
        return env["MASTER_ADDR"], int(env["MASTER_PORT"])
    endpoint = env.get("PADDLE_MASTER") or (env.get("PADDLE_TRAINER_ENDPOINTS") or "").split(",")[0]
    if not endpoint:
        return None, None
    host, port = endpoint.rsplit(":", 1)
    return host, int(port)


def on_one_machine(environ=None):
    """Whether every worker is on this machine: the master's address is a loopback one
    (the package's own workers), or Paddle's launcher was given one machine (``--nnodes
    1``, whose master is this machine's address)."""
    env = os.environ if environ is None else environ
    host, _ = master(env)
    return env.get("PADDLE_NNODES") == "1" or (host is not None and is_loopback(host))


def is_loopback(host):
    """Whether ``host`` (a name or an address) is this machine's loopback."""
    try:
        return ipaddress.ip_address(socket.gethostbyname(host)).is_loopback
    except (OSError, ValueError):
        return False


def source_address(host):
    """The IPv4 address this machine sends from to reach ``host``, or None when there is
    no route. A UDP socket's connect() only asks the kernel for the route: nothing is sent."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect((socket.gethostbyname(host), 9))
            return probe.getsockname()[0]
    except OSError:
        return None


def interface_address(name):
    """The IPv4 address of interface ``name``, or None."""
    if fcntl is None:
        return None
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            packed = fcntl.ioctl(s.fileno(), SIOCGIFADDR, struct.pack("256s", name.encode()[:15]))
        except OSError:  # no IPv4 address, or no such ioctl
            return None
    return socket.inet_ntoa(packed[20:24])


def interface_to(host):
    """The name of the interface through which this machine reaches ``host`` (the loopback
    one for 127.0.0.1 or an address of this machine's own), or None."""
    source = source_address(host)
    if source is None or not hasattr(socket, "if_nameindex"):
        return None
    for _, name in socket.if_nameindex():
        if interface_address(name) == source:
            return name
    return None


def workers_interface(environ=None):
    """The interface through which the workers reach each other: the loopback one when
    they are all on this machine, else the one through which this machine reaches the
    master (on the master's machine, the one holding its address); None when there is no
    master or no answer."""
    env = os.environ if environ is None else environ
    host, _ = master(env)
    if host is None:
        return None
    return interface_to("127.0.0.1" if on_one_machine(env) else host)


def choose_interface(environ=None):
    """Set GLOO_SOCKET_IFNAME to :func:`workers_interface`, unless the user has set it
    (theirs wins) or there is no answer; before the process group is made, when Paddle
    reads it. Returns ``(name, chosen)``: the interface in effect (None: Paddle's default)
    and whether it was chosen here."""
    env = os.environ if environ is None else environ
    if env.get("GLOO_SOCKET_IFNAME"):
        return env["GLOO_SOCKET_IFNAME"], False
    name = workers_interface(env)
    if name and len(name) > 1:  # Paddle ignores a name of one character
        env["GLOO_SOCKET_IFNAME"] = name
        return name, True
    return None, False


def listening_socket(port):
    """A descriptor of this process's socket listening on TCP ``port`` (Linux: the socket's
    inode in /proc/self/net/tcp, then the descriptor that holds it), or None."""
    inodes = set()
    try:
        with open("/proc/self/net/tcp") as table:
            for line in list(table)[1:]:
                fields = line.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":  # LISTEN
                    inodes.add(fields[9])
        for fd in os.listdir("/proc/self/fd"):
            with_inode = os.readlink(f"/proc/self/fd/{fd}")
            if with_inode.startswith("socket:[") and with_inode[8:-1] in inodes:
                return int(fd)
    except OSError:
        return None
    return None


def keep_store_on(device, port):
    """Bind the store's listening socket (this process's, on TCP ``port``) to ``device``,
    once every worker has joined: from then on only connections that arrive through it are
    accepted (through the loopback device, only this machine's); the joined workers'
    connections go on. True if done (Linux; 5.7 or later without privileges), False where
    it cannot be."""
    fd = listening_socket(port)
    if fd is None or device is None or not hasattr(socket, "SO_BINDTODEVICE"):
        return False
    with socket.socket(fileno=os.dup(fd)) as store:  # the same socket; closing the copy leaves it
        try:
            store.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, device.encode())
        except OSError:
            return False
    return True
