"""Memory of ``python -m matting_lib.predict``, measured beside the estimate it refuses photos by.

    .venv/bin/python benchmarks/bench_predict_memory.py                       # the shipped student, 4 and 9 Mpx
    .venv/bin/python benchmarks/bench_predict_memory.py --models student:0.25 teacher:1.0 --sides 700 2000

Each (network, size) runs in a fresh subprocess: a random photo and a rectangular mask are written, then the whole
command runs (decoding, trimap from the mask, the network, writing the matte). Reported: the increase of the
process's peak resident set (``VmHWM``) over its resident set just before the command, per million pixels, and
:func:`matting_lib.inference.predict.memory_needed` for the same network and size; the ratio estimate / measured should
stay above 1 (the command refuses a photo by the estimate, so it must not fall short).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile

SCRIPT = """
import json, sys
import cv2, numpy as np, torch
from matting_lib.inference import predict
from matting_lib.networks import checkpoints
from matting_lib.networks.models import build_model

def status(key):
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith(key + ":")) * 1024

spec, side, folder, threads = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
torch.set_num_threads(threads)
if spec == "shipped":
    ckpt = str(predict.SHIPPED_STUDENT)
    arch = checkpoints.load_model(ckpt).arch
else:
    kind, width = spec.split(":")
    model = build_model(kind, float(width))
    arch = model.arch
    ckpt = checkpoints.save_checkpoint(f"{folder}/net.pt", model=model, config={}, epoch=0, step=0, metrics={})
rng = np.random.default_rng(0)
mask = np.zeros((side, side), np.uint8)
mask[side // 4:3 * side // 4, side // 4:3 * side // 4] = 255
cv2.imwrite(f"{folder}/photo.jpg", rng.integers(0, 256, (side, side, 3), dtype=np.uint8))
cv2.imwrite(f"{folder}/mask.png", mask)
del mask
before = status("VmRSS")
rc = predict.main([f"{folder}/photo.jpg", "--mask", f"{folder}/mask.png", "--checkpoint", str(ckpt),
                   "--out", f"{folder}/alpha.png", "--force", "--device", "cpu"])
assert rc == 0, rc
used = status("VmHWM") - before
print(json.dumps({"used": used, "estimate": predict.memory_needed(arch, side * side)}))
"""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--models", nargs="+", default=["shipped"],
                   help="'shipped' (matting_lib/assets/student-default.pt) or KIND:WIDTH, e.g. teacher:1.0")
    p.add_argument("--sides", type=int, nargs="+", default=[2000, 3000], help="square photo sides in pixels")
    p.add_argument("--threads", type=int, default=2, help="torch threads (the peak barely depends on it)")
    args = p.parse_args(argv)
    print(f"{'network':<14} {'photo':>11} {'measured GB':>12} {'GB/Mpx':>7} {'estimate GB':>12} {'ratio':>6}")
    for spec in args.models:
        for side in args.sides:
            with tempfile.TemporaryDirectory() as folder:
                out = subprocess.run([sys.executable, "-c", SCRIPT, spec, str(side), folder, str(args.threads)],
                                     capture_output=True, text=True, timeout=1800)
            if out.returncode != 0:
                print(out.stderr, file=sys.stderr)
                return 1
            r = json.loads(out.stdout.strip().splitlines()[-1])
            mpx = side * side / 1e6
            print(f"{spec:<14} {f'{side}×{side}':>11} {r['used'] / 1e9:>12.2f} {r['used'] / 1e9 / mpx:>7.3f} "
                  f"{r['estimate'] / 1e9:>12.2f} {r['estimate'] / r['used']:>6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
