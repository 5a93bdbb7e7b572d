"""Writes `screenshots/tensorboard-moons.png`: what `kerasflows train --tensorboard` draws.

Trains an NSF on moons with `kerasflows train moons --tensorboard DIR`
(4 spline couplings, hidden [64, 64], 30 epochs of 20,000 points, seed 0),
then reads the `density` pictures back with `kerasflows.callbacks.read_frames`
and puts the frames after epochs 1, 3, 10 and 30 side by side, the
`samples` histogram of the last epoch after them.

Usage:

    python scripts/tensorboard_strip.py [--out screenshots/tensorboard-moons.png]
"""

import argparse
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EPOCHS = (1, 3, 10, 30)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=os.path.join(ROOT, "screenshots",
                                                      "tensorboard-moons.png"))
    args = parser.parse_args(argv)
    from kerasflows import callbacks, pictures
    with tempfile.TemporaryDirectory() as tmp:
        logs = os.path.join(tmp, "runs")
        subprocess.run([sys.executable, "-m", "kerasflows.cli", "train", "moons", "--n", "20000",
                        "--recipe", "nsf", "--layers", "4", "--hidden", "64,64",
                        "--epochs", str(EPOCHS[-1]), "--lr", "2e-3", "--seed", "0",
                        "--out", os.path.join(tmp, "moons.keras"), "--tensorboard", logs,
                        "--quiet"], check=True, cwd=ROOT)
        density = dict(callbacks.read_frames(logs, "density"))
        samples = dict(callbacks.read_frames(logs, "samples"))
    frames = [density[e - 1] for e in EPOCHS] + [samples[EPOCHS[-1] - 1]]
    strip = pictures.side_by_side(frames, gap=6, colour=(255, 255, 255))
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "wb") as f:
        f.write(pictures.encode_png(strip))
    print(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
