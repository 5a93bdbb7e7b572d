"""Times `import tensorflow, tensorflow_probability, kerasflows` in fresh
processes: warm (straight after another import), and after some time with
nothing running or with PyTorch training (as between the harness's jobs).

This machine pages out memory that has not been touched for a minute
(README, Benchmarks); the import times are how we see whether a TensorFlow
job that starts after a pause reads TensorFlow's libraries back from disk
(which it would then pay for in its first step too).

    .venv-bench/bin/python benchmarks/cold_import.py --cycles 2 --wait 120
"""

import argparse
import json
import subprocess
import sys
import time

IMPORT = ("import time; t = time.perf_counter(); "
          "import tensorflow, tensorflow_probability, kerasflows; "
          "print(time.perf_counter() - t)")

TORCH = """
import time, torch
torch.set_num_threads(2)
net = torch.nn.Sequential(torch.nn.Linear(2, 64), torch.nn.ReLU(), torch.nn.Linear(64, 64),
                          torch.nn.ReLU(), torch.nn.Linear(64, 2))
opt = torch.optim.Adam(net.parameters())
end = time.time() + {seconds}
while time.time() < end:
    loss = net(torch.randn(512, 2)).pow(2).mean()
    opt.zero_grad(); loss.backward(); opt.step()
"""


def timed_import():
    out = subprocess.run([sys.executable, "-c", IMPORT], capture_output=True, text=True,
                         env={"TF_CPP_MIN_LOG_LEVEL": "3", "PATH": "/usr/bin:/bin"}, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cycles", type=int, default=2, help="rounds of the four imports")
    parser.add_argument("--wait", type=float, default=120.0,
                        help="seconds idle, and seconds of PyTorch training, before the cold imports")
    parser.add_argument("--no-torch", action="store_true", help="skip the import after PyTorch")
    args = parser.parse_args()
    rows = []
    for cycle in range(args.cycles):
        row = {"warm": timed_import(), "warm_again": timed_import()}
        time.sleep(args.wait)
        row["after_idle"] = timed_import()
        if not args.no_torch:
            timed_import()                     # warm again first
            subprocess.run([sys.executable, "-c", TORCH.format(seconds=args.wait)], check=True)
            row["after_torch"] = timed_import()
        rows.append(row)
        print(f"cycle {cycle + 1}: " + ", ".join(f"{k} {v:.1f} s" for k, v in row.items()),
              flush=True)
    print(json.dumps({"wait_s": args.wait, "cycles": rows}))


if __name__ == "__main__":
    main()
