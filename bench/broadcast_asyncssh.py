"""The asyncssh peer of bench/broadcast_bench.c: the same broadcast on the same nodes.

Opens one connection per node (all at once, then kept warm), runs a few warm-up rounds, then
ROUNDS rounds of asyncio.gather(conn.run('true') for every node); a round ends when every
exit status has arrived. Host keys are checked against the known_hosts file the C benchmark
writes from the nodes' pinned keys; no ssh config file or agent is used.

Output: key=value lines: asyncssh_connect_all_ms, asyncssh_p50_ms, asyncssh_p99_ms,
asyncssh_mean_ms (percentiles by nearest rank, as the C benchmark computes them). Given
--node-pids (each node's pid 1), also the CPU the node side spends per exec during the
counted rounds, measured from /proc as the C benchmark measures it for kite.

--command runs another command instead of 'true' (to compare what kite sends).

Run with the system interpreter, where Debian's python3-asyncssh lives:
  /usr/bin/python3 bench/broadcast_asyncssh.py --user U --key KEY --known-hosts FILE \
      [--rounds 50] [--warmup 5] [--node-pids PID,...] [--command CMD] ADDRESS:PORT...
"""
import argparse
import asyncio
import math
import os
import statistics
import sys
import time
import warnings

# Debian's cryptography warns about the legacy ciphers asyncssh still registers.
warnings.simplefilter("ignore")
import asyncssh  # noqa: E402


def percentile(values, p):
    """Nearest rank: the smallest value with at least p of the values at or below it."""
    s = sorted(values)
    rank = max(1, math.ceil(p * len(s)))
    return s[rank - 1]


def parse_node(arg):
    host, _, port = arg.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected ADDRESS:PORT, got {arg!r}")
    return host, int(port)


def node_ticks(roots):
    """(self, children) CPU ticks of the processes that descend from (or are) roots: utime +
    stime of each, and cutime + cstime (the children it reaped)."""
    rows = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # The command name may hold spaces and parentheses: count fields from the last ')'.
        fields = stat[stat.rindex(")") + 2 :].split()
        ppid = int(fields[1])
        ut, st, cut, cst = (int(x) for x in fields[11:15])
        rows[int(name)] = (ppid, ut + st, cut + cst)
    marked = {pid for pid in roots if pid in rows}
    if len(marked) != len(roots):
        sys.exit("asyncssh: cannot find every node's processes in /proc")
    changed = True
    while changed:
        changed = False
        for pid, (ppid, _, _) in rows.items():
            if pid not in marked and ppid in marked:
                marked.add(pid)
                changed = True
    return (sum(rows[p][1] for p in marked), sum(rows[p][2] for p in marked))


async def broadcast(conns, command):
    results = await asyncio.gather(*(c.run(command) for c in conns))
    for r in results:
        if r.exit_status != 0:
            sys.exit(f"asyncssh: {command!r} exited with {r.exit_status} ({r.exit_signal})")


async def main(a):
    t0 = time.perf_counter()
    conns = await asyncio.gather(
        *(
            asyncssh.connect(
                host,
                port=port,
                username=a.user,
                client_keys=[a.key],
                known_hosts=a.known_hosts,
                agent_path=None,
                config=[],
            )
            for host, port in a.nodes
        )
    )
    connect_ms = (time.perf_counter() - t0) * 1e3
    for _ in range(a.warmup):
        await broadcast(conns, a.command)
    times = []
    if a.node_pids:
        ticks0 = node_ticks(a.node_pids)
    for _ in range(a.rounds):
        t = time.perf_counter()
        await broadcast(conns, a.command)
        times.append((time.perf_counter() - t) * 1e3)
    if a.node_pids:
        ticks1 = node_ticks(a.node_pids)
    for c in conns:
        c.close()
    await asyncio.gather(*(c.wait_closed() for c in conns))
    print(f"asyncssh_nodes={len(conns)}")
    print(f"asyncssh_rounds={a.rounds}")
    print(f"asyncssh_connect_all_ms={connect_ms:.1f}")
    print(f"asyncssh_p50_ms={percentile(times, 0.50):.2f}")
    print(f"asyncssh_p99_ms={percentile(times, 0.99):.2f}")
    print(f"asyncssh_mean_ms={statistics.fmean(times):.2f}")
    if a.node_pids:
        per_exec = 1e3 / os.sysconf("SC_CLK_TCK") / a.rounds / len(conns)
        sshd = (ticks1[0] - ticks0[0]) * per_exec
        commands = (ticks1[1] - ticks0[1]) * per_exec
        print(f"asyncssh_node_cpu_per_exec_ms={sshd + commands:.3f}")
        print(f"asyncssh_node_cpu_sshd_per_exec_ms={sshd:.3f}")
        print(f"asyncssh_node_cpu_commands_per_exec_ms={commands:.3f}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--user", required=True)
    ap.add_argument("--key", required=True, help="private key file")
    ap.add_argument("--known-hosts", required=True)
    ap.add_argument("--rounds", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--node-pids", type=lambda s: [int(x) for x in s.split(",") if x], default=[],
                    help="each node's pid 1, comma-separated: measure the node side's CPU")
    ap.add_argument("--command", default="true")
    ap.add_argument("nodes", nargs="+", type=parse_node, metavar="ADDRESS:PORT")
    args = ap.parse_args()
    if args.rounds <= 0 or args.warmup < 0:
        ap.error("--rounds must be > 0 and --warmup >= 0")
    asyncio.run(main(args))
