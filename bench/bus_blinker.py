"""The peer baseline for bench/bus_bench.c: the same two workloads with blinker's signals.

  one_sub:   one receiver connected to a signal; signal.send(sender, **payload) N times.
  keyed_10k: 10,000 receivers, each connected with sender=<its key object> (blinker's keyed
             routing); each send goes to a pseudo-random key, so one receiver runs per send.

blinker's send is synchronous (the receiver runs inside send), so this measures emit and
delivery together, as the C benchmark does. Receivers are connected the default way (weak
references); the benchmark keeps them alive. Receivers sum a payload field and count calls,
and the sums are checked. Each workload runs several times and the median is printed as
key=value lines: blinker_one_sub_events_per_sec=..., blinker_keyed_10k_events_per_sec=...

Run with the system interpreter, where Debian's python3-blinker lives:
  /usr/bin/python3 bench/bus_blinker.py [--events N] [--keyed-events N] [--runs R]
"""
import argparse
import statistics
import sys
import time

import blinker

NKEYS = 10000


class Key:
    """A routing key object (a node, a pool): blinker routes by the sender's identity."""

    __slots__ = ("n", "__weakref__")

    def __init__(self, n):
        self.n = n


def bench_one_sub(events, runs):
    sig = blinker.Signal("node_lost")
    acc = [0, 0]  # calls, sum of node

    def on_lost(sender, pool, node, rank, reason):
        acc[0] += 1
        acc[1] += node

    sig.connect(on_lost)
    send = sig.send
    rates = []
    for _ in range(runs):
        acc[0] = acc[1] = 0
        t0 = time.perf_counter()
        for i in range(events):
            send(None, pool=1, node=i, rank=0, reason=None)
        dt = time.perf_counter() - t0
        if acc[0] != events or acc[1] != events * (events - 1) // 2:
            sys.exit("one_sub: wrong calls or sum")
        rates.append(events / dt)
    print(f"blinker_one_sub_events={events}")
    print(f"blinker_one_sub_events_per_sec={statistics.median(rates):.0f}")


def make_receiver(key, counts):
    def on_lost(sender, pool, node, rank, reason):
        c = counts[key.n]
        c[0] += 1
        c[1] += node
        if sender is not key or pool != key.n:
            c[2] += 1

    return on_lost


def bench_keyed(events, runs):
    sig = blinker.Signal("node_lost")
    keys = [Key(n) for n in range(NKEYS)]
    counts = [[0, 0, 0] for _ in range(NKEYS)]  # calls, sum, misrouted per key
    receivers = [make_receiver(k, counts) for k in keys]
    for k, r in zip(keys, receivers):
        sig.connect(r, sender=k)
    send = sig.send
    rates = []
    for run in range(runs):
        for c in counts:
            c[0] = c[1] = c[2] = 0
        # The key sequence (xorshift64, as in the C benchmark) is computed before the clock
        # starts, so that Python arithmetic is not counted against blinker.
        rng = (0x9E3779B97F4A7C15 + run) & 0xFFFFFFFFFFFFFFFF
        mask = 0xFFFFFFFFFFFFFFFF
        seq = []
        for _ in range(events):
            rng ^= (rng << 13) & mask
            rng ^= rng >> 7
            rng ^= (rng << 17) & mask
            seq.append(rng % NKEYS)
        t0 = time.perf_counter()
        for i, n in enumerate(seq):
            send(keys[n], pool=n, node=i, rank=0, reason=None)
        dt = time.perf_counter() - t0
        calls = sum(c[0] for c in counts)
        total = sum(c[1] for c in counts)
        misrouted = sum(c[2] for c in counts)
        if calls != events or total != events * (events - 1) // 2 or misrouted:
            sys.exit("keyed_10k: wrong calls, sum or routing")
        rates.append(events / dt)
    print(f"blinker_keyed_10k_events={events}")
    print(f"blinker_keyed_10k_events_per_sec={statistics.median(rates):.0f}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=300000)
    ap.add_argument("--keyed-events", type=int, default=300000)
    ap.add_argument("--runs", type=int, default=5)
    a = ap.parse_args()
    print(f"blinker_version={getattr(blinker, '__version__', 'unknown')}")
    print(f"blinker_python={sys.version.split()[0]}")
    bench_one_sub(a.events, a.runs)
    bench_keyed(a.keyed_events, a.runs)


if __name__ == "__main__":
    main()
