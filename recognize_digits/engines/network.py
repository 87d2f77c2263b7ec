"""How the workers of a data-parallel training reach each other (see :mod:`.parallel`).

Two things Paddle leaves to the machine's configuration, which this module settles:

* Gloo (the CPU backend) binds each worker's sockets to one address and tells the others
  to connect there. Unless ``GLOO_SOCKET_IFNAME`` names an interface it takes the address
  the host name resolves to, which is 127.0.0.1 on many machines (``127.0.0.1 HOSTNAME`` in
  /etc/hosts): the other machines then "connect [127.0.0.1]:PORT" and are refused.
  :func:`choose_interface` names the interface through which this machine reaches the
  master; the other machines reach this one through it too (the same network).
* Worker 0 holds Paddle's TCP store, which every worker reads and writes while they start.
  Paddle's C++ makes it listen on every address (0.0.0.0), with no setting to change it.
  When all workers are on this machine (the master's address is a loopback one),
  :func:`keep_store_on_loopback` binds the listening socket to the loopback device once
  they have joined, so that from then on no other machine can connect to it.

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


def master_host(environ=None):
    """The master's host from a worker's environment, read in the order Paddle's
    ``init_parallel_env`` reads it (MASTER_ADDR, PADDLE_MASTER, the first of
    PADDLE_TRAINER_ENDPOINTS); None in a process of its own."""
    env = os.environ if environ is None else environ
    if env.get("MASTER_ADDR"):
        return env["MASTER_ADDR"]
    endpoint = env.get("PADDLE_MASTER") or (env.get("PADDLE_TRAINER_ENDPOINTS") or "").split(",")[0]
    return endpoint.rsplit(":", 1)[0] if endpoint else None


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


def choose_interface(environ=None):
    """Set GLOO_SOCKET_IFNAME to the interface that reaches the master, unless the user has
    set it (theirs wins) or there is no master or no answer; before the process group is
    made, when Paddle reads it. Returns ``(name, host)``: the interface in effect (or None)
    and the master's host."""
    env = os.environ if environ is None else environ
    host = master_host(env)
    if env.get("GLOO_SOCKET_IFNAME") or host is None:
        return env.get("GLOO_SOCKET_IFNAME"), host
    name = interface_to(host)
    if name and len(name) > 1:  # Paddle ignores a name of one character
        env["GLOO_SOCKET_IFNAME"] = name
        return name, host
    return None, host


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


def keep_store_on_loopback(port):
    """Bind the store's listening socket (on ``port``) to the loopback device: connections
    from other machines are refused from then on, this machine's go on. True if done (Linux,
    5.7 or later without privileges); False where it cannot be."""
    fd = listening_socket(port)
    device = interface_to("127.0.0.1")
    if fd is None or device is None or not hasattr(socket, "SO_BINDTODEVICE"):
        return False
    with socket.socket(fileno=os.dup(fd)) as store:  # the same socket; closing the copy leaves it
        try:
            store.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, device.encode())
        except OSError:
            return False
    return True
