"""deepspectrum (random weights: ImageNet files cannot be downloaded here)
and the CNN weights policy of pipeline/cnn.py."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from pipeline import cnn
from pipeline.api import Cache
from pipeline.graph import resolve
from pipeline.stage import ConfigError
from tests.helpers import extract

SR = 16000
RANDOM = ["--set", "deepspectrum.weights=random", "--set", "deepspectrum.seed=0",
          "--set", "deepspectrum.image_size=64"]     # small images keep the CPU test quick
RANDOM_OPTS = {"deepspectrum": {"weights": "random", "seed": 0, "image_size": 64}}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("ds")
    t = np.arange(3 * SR) / SR
    y = 0.3 * np.sin(2 * np.pi * (200 + 300 * t) * t) + 0.01 * np.random.default_rng(0).standard_normal(len(t))
    sf.write(root / "a.wav", y.astype(np.float32), SR, subtype="PCM_16")
    # 2.0 s: 3 windows of 1 s at hop 0.5 s; 0.4 s: one padded window.
    (root / "t.csv").write_text("id,audio,start,end\nlong,a.wav,0.5,2.5\nshort,a.wav,1.0,1.4\n")
    return root / "t.csv"


@pytest.fixture
def empty_torch_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "torch"


def test_random_weights_one_1024_vector_per_window(corpus, tmp_path):
    cache = tmp_path / "c"
    assert extract(corpus, cache, "--stages", "deepspectrum", *RANDOM) == 0
    c = Cache(cache)
    feats = c.load("deepspectrum", ["long", "short"], overrides=RANDOM_OPTS)
    assert feats["long"].arrays["deepspectrum"].shape == (3, 1024)
    np.testing.assert_allclose(feats["long"].times["deepspectrum"], [0.5, 1.0, 1.5])
    assert feats["short"].arrays["deepspectrum"].shape == (1, 1024)
    assert feats["short"].meta["padded"] and feats["long"].meta["seed"] == 0
    assert np.isfinite(feats["long"].arrays["deepspectrum"]).all()
    # Different windows of a chirp look different, so their features differ.
    assert not np.allclose(feats["long"].arrays["deepspectrum"][0], feats["long"].arrays["deepspectrum"][2])
    attrs = c.stage_attrs("deepspectrum", overrides=RANDOM_OPTS)
    assert attrs["dim"] == 1024 and attrs["weights"]["weights"] == "random" and attrs["weights"]["seed"] == 0

    # A second worker process builds the same network: identical arrays.
    other = tmp_path / "other"
    code = ("import sys; from tests.helpers import extract; "
            "sys.exit(extract(sys.argv[1], sys.argv[2], '--stages', 'deepspectrum', *sys.argv[3:]))")
    subprocess.run([sys.executable, "-c", code, str(corpus), str(other), *RANDOM], check=True,
                   cwd=Path(__file__).resolve().parent.parent, capture_output=True)
    again = Cache(other).load("deepspectrum", ["long", "short"], overrides=RANDOM_OPTS)
    for item in ("long", "short"):
        np.testing.assert_array_equal(again[item].arrays["deepspectrum"], feats[item].arrays["deepspectrum"])


def test_seed_is_part_of_the_key_and_changes_the_network():
    a = cnn.load_backbone("resnet18", "random", seed=0, device="cpu")[0]
    b = cnn.load_backbone("resnet18", "random", seed=1, device="cpu")[0]
    x = np.random.default_rng(0).integers(0, 256, (1, 3, 64, 64), dtype=np.uint8)
    assert not np.allclose(cnn.embed_batches(a, x, "cpu"), cnn.embed_batches(b, x, "cpu"))
    ids = {resolve(["deepspectrum"], {"deepspectrum": {"weights": "random", "seed": s}})[-1].config_id
           for s in (0, 1)}
    assert len(ids) == 2


def test_whole_utterance_option_gives_one_vector(corpus, tmp_path):
    opts = ["--set", "deepspectrum.arch=resnet18", "--set", "deepspectrum.window_s=none"]
    assert extract(corpus, tmp_path / "c", "--stages", "deepspectrum", *RANDOM, *opts) == 0
    over = {"deepspectrum": dict(RANDOM_OPTS["deepspectrum"], arch="resnet18", window_s=None)}
    got = Cache(tmp_path / "c").load("deepspectrum", ["long"], overrides=over)["long"]
    assert got.arrays["deepspectrum"].shape == (512,)


def test_missing_imagenet_weights_fail_before_any_work(corpus, tmp_path, empty_torch_home, capsys):
    want = empty_torch_home / "hub" / "checkpoints" / "densenet121-a639ec97.pth"
    with pytest.raises(ConfigError, match="Put the file densenet121-a639ec97.pth") as err:
        resolve(["deepspectrum"])
    assert str(want) in str(err.value) and "weights=random" in str(err.value)
    assert extract(corpus, tmp_path / "c", "--stages", "deepspectrum") != 0
    assert str(want) in capsys.readouterr().err
    assert not (tmp_path / "c" / "shards").exists()


@pytest.mark.parametrize("options, words", [
    ({"weights_path": "/nonexistent/w.pth"}, "weights_path='/nonexistent/w.pth': no such file"),
    ({"weights": "random"}, "needs a seed"),
    ({"weights": "IMAGENET1K_V9"}, "not available for densenet121"),
    ({"arch": "vgg11", "weights": "random", "seed": 0}, "arch='vgg11' is not a known backbone"),
])
def test_bad_options(options, words, empty_torch_home):
    with pytest.raises(ConfigError, match=words.replace("(", r"\(").replace(")", r"\)")):
        resolve(["deepspectrum"], {"deepspectrum": options})


def test_arch_table_matches_torchvision(monkeypatch, empty_torch_home):
    import torchvision.models as tvm
    for arch, spec in cnn.ARCHES.items():
        files = {w.name: w.url.rsplit("/", 1)[1] for w in tvm.get_model_weights(arch)}
        assert files == spec.files, arch
    import torch
    want = torch.hub.get_dir()
    monkeypatch.delitem(sys.modules, "torch")     # the no-torch-imported path of hub_dir()
    assert cnn.hub_dir() == want == str(empty_torch_home / "hub")


def test_cached_weights_file_is_loaded_and_digested(empty_torch_home):
    """A torchvision-style file in the hub cache is used, and its digest is in the key."""
    import torch
    import torchvision
    ref, dim = cnn.load_backbone("resnet18", "random", seed=3, device="cpu")
    with torch.random.fork_rng():
        torch.manual_seed(3)
        model = torchvision.models.resnet18(weights=None)
    state = model.state_dict()
    path = empty_torch_home / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    path.parent.mkdir(parents=True)
    torch.save(state, path)
    loaded, dim2 = cnn.load_backbone("resnet18", "imagenet", device="cpu")
    x = np.random.default_rng(1).integers(0, 256, (2, 3, 64, 64), dtype=np.uint8)
    np.testing.assert_array_equal(cnn.embed_batches(loaded, x, "cpu"), cnn.embed_batches(ref, x, "cpu"))
    assert dim == dim2 == 512
    opts = {"deepspectrum": {"arch": "resnet18"}}
    first = resolve(["deepspectrum"], opts)[-1]
    assert first.stage.identity()["weights_digest"]
    state["fc.bias"] += 1.0
    torch.save(state, path)
    assert resolve(["deepspectrum"], opts)[-1].config_id != first.config_id


def test_old_densenet_checkpoint_names_load_from_weights_path(tmp_path):
    """torchvision serves DenseNet files with 'norm.1'-style names; they load."""
    import re
    import torch
    import torchvision
    ref, _ = cnn.load_backbone("densenet121", "random", seed=5, device="cpu")
    with torch.random.fork_rng():
        torch.manual_seed(5)
        model = torchvision.models.densenet121(weights=None)
    old = {re.sub(r"(denselayer\d+\.(?:norm|relu|conv))([12])\.", r"\1.\2.", k): v
           for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    assert any(".norm.1." in k for k in old)
    torch.save(old, tmp_path / "dn.pth")
    loaded, _ = cnn.load_backbone("densenet121", "imagenet", weights_path=str(tmp_path / "dn.pth"), device="cpu")
    x = np.random.default_rng(2).integers(0, 256, (1, 3, 64, 64), dtype=np.uint8)
    np.testing.assert_array_equal(cnn.embed_batches(loaded, x, "cpu"), cnn.embed_batches(ref, x, "cpu"))
