import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

# Tests never read or write the user's model store (~/.cache/linksim/models): a
# scheme that trains during a test writes into this temporary folder instead.
import tempfile  # noqa: E402

os.environ["LINKSIM_MODEL_STORE"] = tempfile.mkdtemp(prefix="linksim-test-store-")
