"""The same ketch commands from two checkouts (two virtualenvs), alternating.

    python3 bench/interpreter_compare.py N TREE_A TREE_B

Used to choose the interpreter the virtualenv is made from: TREE_A and TREE_B
are clones of this repository set up with different PYTHON= (see
scripts/setup.sh); each round runs every command once from each tree, in
alternating order. Needs the busybox image in the default root and a busybox
bundle at /tmp/rb/bundle (bench/runtime_run.py makes one).
"""

import statistics
import subprocess
import sys
import time

n = int(sys.argv[1])
trees = sys.argv[2:4]
cmds = {"--version": lambda t: [f"{t}/.venv/bin/ketch", "--version"],
        "images": lambda t: [f"{t}/.venv/bin/ketch", "images"],
        "ketch-runc run": lambda t: [f"{t}/.venv/bin/ketch-runc", "--root", "/tmp/rb/root3",
                                     "run", "-b", "/tmp/rb/bundle", "zz"],
        "run --rm": lambda t: [f"{t}/.venv/bin/ketch", "run", "--rm", "--network", "none",
                               "busybox", "true"]}
res = {(c, t): [] for c in cmds for t in trees}
for i in range(n):
    for c, f in cmds.items():
        for t in (trees if i % 2 == 0 else trees[::-1]):
            a = time.perf_counter()
            subprocess.run(f(t), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            res[(c, t)].append((time.perf_counter() - a) * 1000)
for c in cmds:
    a, b = (statistics.median(res[(c, t)]) for t in trees)
    print(f"{c:16s} A {a:6.1f} ms  B {b:6.1f} ms  B/A {b / a:.2f}")
