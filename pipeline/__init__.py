"""emocache extraction: corpora -> manifest -> stages -> content-addressed HDF5 cache."""
import os

__version__ = "0.1.0"

# Offline at run time: Hugging Face libraries must fail at once on a missing
# model instead of retrying the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# librosa's numba kernels compile once per machine instead of once per worker.
os.environ.setdefault("NUMBA_CACHE_DIR", os.path.join(os.path.expanduser("~"), ".cache", "emocache", "numba"))
