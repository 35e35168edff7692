"""emocache extraction: corpora -> manifest -> stages -> content-addressed HDF5 cache.

Importing it changes nothing process-wide; the `pipeline` and `heads`
commands set up their own process with `command_environment()`.
"""
import os

__version__ = "0.1.0"


def command_environment():
    """For the command-line tools' own processes (and the workers they start):
    Hugging Face libraries fail at once on a missing model instead of retrying
    the network, and librosa's numba kernels compile once per machine into a
    writable folder. A variable the user set is left as it is."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("NUMBA_CACHE_DIR", os.path.join(os.path.expanduser("~"), ".cache", "emocache", "numba"))
