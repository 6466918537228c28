"""Runs the `$ kite ...` commands of README.md's guide exactly as written, in order, in a
directory holding a copy of examples/, and checks each one's exit status (the "(exit status N)"
the README gives, else 0) and that every output line the README shows appears in what the
command printed (stdout and stderr), with the parts that differ from run to run (numbers,
absolute paths, the host name) left open. Used by test_readme.sh."""
import os
import re
import signal
import subprocess
import sys
import time

readme, workdir = sys.argv[1], sys.argv[2]
host = os.uname().nodename
text = open(readme).read().splitlines()
cmds = []  # (command, [expected lines], expected status, line number)
i = 0
in_block = False
while i < len(text):
    line = text[i]
    if line.startswith("```"):
        in_block = not in_block
        i += 1
        continue
    if in_block and line.startswith("$ kite "):
        cmd, want, status, at = line[2:], [], 0, i + 1
        i += 1
        while i < len(text) and not text[i].startswith("$ ") and not text[i].startswith("```"):
            exp = text[i]
            m = re.search(r"\s+\(exit status (\d+)\)$", exp)
            if m:
                status = int(m.group(1))
                exp = exp[: m.start()]
            want.append(exp)
            i += 1
        cmds.append((cmd, want, status, at))
        continue
    i += 1


def pattern(exp):
    """A regex for one expected line: numbers, absolute paths and the README's host name
    (`vm`, what uname -n printed where the README was written) are open."""
    out = []
    for tok in re.split(r"(\s+)", exp.strip()):
        if not tok:
            continue
        if tok.isspace():
            out.append(r"\s+")
        elif tok.startswith("/") or tok.startswith("~/"):
            out.append(r"\S+")
        elif tok == "vm":
            out.append(re.escape(host))
        else:
            out.append(r"\d+".join(re.escape(p) for p in re.split(r"\d+", tok)))
    return re.compile(r"^\s*" + "".join(out) + r"\s*$")


def owner_pid(name):
    out = subprocess.run(["kite", "status", "--json", name], capture_output=True, text=True,
                         cwd=workdir).stdout
    import json
    for p in json.loads(out).get("pools", []):
        if p["name"] == name:
            return p["owner_pid"]
    return 0


fails = 0
for cmd, want, status, at in cmds:
    # The README's dead-owner section: its pool was opened and its owner SIGKILLed first.
    if any("(dead)" in w for w in want):
        subprocess.run(["kite", "up", "examples/hello.yaml"], cwd=workdir, capture_output=True)
        pid = owner_pid("hello")
        if pid:
            os.kill(pid, signal.SIGKILL)
            for _ in range(100):
                try:
                    os.kill(pid, 0)
                    time.sleep(0.05)
                except ProcessLookupError:
                    break
    p = subprocess.run(["bash", "-c", cmd], cwd=workdir, capture_output=True, text=True)
    got = (p.stdout + p.stderr).splitlines()
    ok = p.returncode == status
    missing = [w for w in want if w.strip() and not any(pattern(w).match(g) for g in got)]
    print(f"README.md:{at}: $ {cmd}  -> exit {p.returncode}" +
          ("" if ok and not missing else "   FAIL"), file=sys.stderr)
    if not ok:
        print(f"    exit status {p.returncode}, the README says {status}", file=sys.stderr)
    for w in missing:
        print(f"    the README shows a line the command did not print: {w!r}", file=sys.stderr)
    if not ok or missing:
        fails += 1
        for g in got[-30:]:
            print(f"    | {g}", file=sys.stderr)
print(f"{len(cmds)} README commands, {fails} failed", file=sys.stderr)
sys.exit(1 if fails or len(cmds) < 10 else 0)
