"""Every registered head (and each of its variants): masks respected, and a
tiny overfit run through the shared loop (forward / loss / backward of every
variant: the head contract, tests/test_contract_heads.py)."""
from __future__ import annotations

import dataclasses
import typing

import pytest
import torch

from heads.models import load_all
from heads.train import fit, seed_everything
from pipeline.stage import ConfigError

HEADS = load_all()
N_CLASSES = 4
WIDTHS = (7, 5, 6, 9)        # input widths, one per input in order


def _variants(cls):
    hints = typing.get_type_hints(cls.Config)
    return list(typing.get_args(hints["ablation"])) if "ablation" in hints else ["full"]


NAMES = sorted(name for name in HEADS if name not in HEADS.aliases)   # an alias is the same head
CASES = [(name, v) for name in NAMES for v in _variants(HEADS[name])]


def _config(cls, variant, preset="demo", **extra):
    values = {"ablation": variant} if variant != "full" or "ablation" in typing.get_type_hints(cls.Config) else {}
    values.update(extra)
    return cls.make_config(preset, values)


def _batch(cls, config, lengths=(9, 4, 2), seed=0):
    """A batch with real steps 0..len-1 and padding after them."""
    g = torch.Generator().manual_seed(seed)
    inputs = cls.inputs(config)
    dims = {name: WIDTHS[i % len(WIDTHS)] for i, name in enumerate(sorted(inputs)) if inputs[name].is_feature}
    if "layers" in dims and "speech" in dims:
        dims["speech"] = 3 * dims["layers"]              # superb: the speech input is whole layers
    if getattr(config, "speech_conv", None) == "2d" and "speech" in dims:
        dims["speech"] = 2 * config.speech_planes        # HFF's 2-D CNN reads whole planes
    b = len(lengths)
    batch = {"id": [f"i{j}" for j in range(b)], "label": torch.tensor([j % N_CLASSES for j in range(b)])}
    for name, inp in inputs.items():
        if inp.kind == "vec":
            batch[name] = torch.randn(b, dims[name], generator=g)
            continue
        # Different lengths per input so masks of different inputs differ.
        lens = [max(1, n - (len(name) % 2)) for n in lengths]
        if inp.kind == "ids":       # small positive integers (ids, counts)
            x = torch.randint(1, 8, (b, max(lens), 1), generator=g)
        else:
            x = torch.randn(b, max(lens), dims.get(name, WIDTHS[0]), generator=g)
        mask = torch.arange(max(lens))[None, :] < torch.tensor(lens)[:, None]
        batch[name] = x * mask[..., None]
        batch[f"{name}_mask"] = mask
    return batch, dims


@pytest.mark.parametrize("name,variant", CASES)
def test_padding_changes_nothing(name, variant):
    cls = HEADS[name]
    check_padding_changes_nothing(cls, _config(cls, variant))


@pytest.mark.parametrize("name", NAMES)
def test_tiny_overfit(name, tmp_path):
    cls = HEADS[name]
    check_tiny_overfit(cls, _config(cls, "full"), tmp_path)


# The checks themselves, for any head and config (tests of a head's own
# option grid call them too, e.g. tests/test_heads_hff.py).

def check_forward_backward(cls, config):
    """Logits of the right shape, and a finite gradient for every parameter."""
    batch, dims = _batch(cls, config)
    model = cls(config, dims, N_CLASSES)
    logits = model(batch)
    assert logits.shape == (3, N_CLASSES)
    model.loss(logits, batch).backward()        # with the head's auxiliary terms, as in training
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


def check_padding_changes_nothing(cls, config):
    """Junk in padded steps, more padding, or none at all: the same logits."""
    batch, dims = _batch(cls, config)
    torch.manual_seed(0)
    model = cls(config, dims, N_CLASSES).eval()
    noisy = dict(batch)
    for key in list(batch):
        if key.endswith("_mask"):
            name_ = key[:-5]
            junk = _junk(batch[name_], 1e3)
            noisy[name_] = torch.where(batch[key][..., None], batch[name_], junk)
    # Extra padding: longer tensors whose added steps are junk and masked out.
    longer = dict(batch)
    for key in list(batch):
        if key.endswith("_mask"):
            name_ = key[:-5]
            x, m = batch[name_], batch[key]
            longer[name_] = torch.cat([x, _junk(x.new_zeros(x.shape[0], 5, x.shape[2]), 50)], 1)
            longer[key] = torch.cat([m, torch.zeros(m.shape[0], 5, dtype=torch.bool)], 1)
    with torch.no_grad():
        ref = model(batch)
        assert torch.allclose(ref, model(noisy), atol=1e-5)
        assert torch.allclose(ref, model(longer), atol=1e-5)
        # Each item alone (no padding at all) gives the same logits as in the batch.
        for j in range(len(batch["id"])):
            single = {}
            for key, v in batch.items():
                if key in ("id",):
                    single[key] = [v[j]]
                elif key.endswith("_mask") or key == "label":
                    single[key] = v[j:j + 1]
            for key in list(single):
                if key.endswith("_mask"):
                    n = int(batch[key][j].sum())
                    single[key] = batch[key][j:j + 1, :n]
                    single[key[:-5]] = batch[key[:-5]][j:j + 1, :n]
            for key, v in batch.items():
                if key not in single:
                    single[key] = v[j:j + 1]
            assert torch.allclose(ref[j:j + 1], model(single), atol=1e-5)


def _junk(x, scale):
    """Values for padded steps: large noise, or large ids for integer inputs."""
    if x.dtype.is_floating_point:
        return scale * torch.randn_like(x)
    return torch.randint_like(x, 1, int(scale))


def check_tiny_overfit(cls, config, tmp_path):
    """Eight items, one batch: the shared loop fits them exactly."""
    seed_everything(0)
    config = dataclasses.replace(config, epochs=60, lr=3e-3, weight_decay=0.0, schedule="none",
                                 patience=0, clip=1.0)
    # No dropout of units or modalities, so the training accuracy measures fit, not noise.
    unit_dropout = {"dropout": 0.0} if hasattr(config, "dropout") else {}
    config = dataclasses.replace(config, modality_dropout=(), **unit_dropout)
    batch, dims = _batch(cls, config, lengths=(6, 5, 4, 3, 6, 2, 5, 4))
    model = cls(config, dims, N_CLASSES)
    out = fit(model, [batch], None, config, list("abcd"), torch.device("cpu"), tmp_path / "m.pt",
              progress=False)
    assert out["history"][-1]["train_wa"] == 1.0
    assert out["history"][-1]["train_loss"] < 0.2 * out["history"][0]["train_loss"]
    assert (tmp_path / "m.pt").exists()


def test_frame_rates_of_tracks():
    from heads.data import frame_ratio
    # 12 ms mel frames against 10 ms LLD frames: frame j starts at 12 j ms, LLD step round(1.2 j).
    assert frame_ratio("fbank@harmofusion", "opensmile@egemaps_lld", "frame_track") == pytest.approx(1.2)
    # Windowed functionals have a rate (1 / hop); one vector per item has none.
    assert frame_ratio("mfcc@hff", "opensmile@egemaps_2hz", "x") == pytest.approx(0.02)
    with pytest.raises(ConfigError, match="frame_track: opensmile@egemaps has no frame rate"):
        frame_ratio("mfcc@hff", "opensmile@egemaps", "frame_track")


def test_tsin_alignment_and_interaction():
    from heads.models.tsin import SemanticInteraction, temporal_alignment
    s = torch.randn(2, 6, 4)
    s_mask = torch.tensor([[1, 1, 1, 0, 0, 0], [1] * 6], dtype=torch.bool)
    t = torch.randn(2, 3, 4)
    u = temporal_alignment(s, s_mask, t)
    # Item 0, token 1 by hand: softmax over its three real frames only.
    w = torch.softmax(s[0, :3] @ t[0, 1] / 2.0, 0)
    assert torch.allclose(u[0, 1], (w[:, None] * s[0, :3]).sum(0), atol=1e-6)
    si = SemanticInteraction(4, 5)
    t_mask = torch.tensor([[1, 1, 0], [1, 1, 1]], dtype=torch.bool)
    u2, t2 = si(u, t, t_mask)
    # Weights are positive and average 1 over the real tokens.
    ratio = (t2 / t)[0, :2, 0]
    assert (ratio > 0).all() and torch.isclose(ratio.mean(), torch.tensor(1.0), atol=1e-5)
    assert torch.all(t2[0, 2] == 0)


@pytest.mark.parametrize("name", ["tsin", "fbank_bilstm"])
def test_modality_dropout_is_off_in_evaluation(name):
    cls = HEADS[name]
    check_modality_dropout_is_off_in_evaluation(cls, _config(cls, "full", modality_dropout=("speech:0.5",)))


def check_modality_dropout_is_off_in_evaluation(cls, config):
    """In evaluation a model trained with modality dropout gives what the
    same weights give without it."""
    batch, dims = _batch(cls, config)
    model = cls(config, dims, N_CLASSES).eval()
    plain = cls(dataclasses.replace(config, modality_dropout=()), dims, N_CLASSES).eval()
    plain.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert torch.allclose(model(batch), plain(batch))


def test_tsin_paper_preset_is_the_papers_recipe():
    config = HEADS["tsin"].make_config("paper")
    assert (config.d, config.d_fusion, config.max_frames, config.max_tokens) == (768, 512, 500, 150)
    assert (config.optimizer, config.lr, config.weight_decay, config.epochs, config.batch_size) == \
        ("adam", 1e-4, 1e-3, 80, 64)
    assert (config.schedule, config.lr_step, config.lr_gamma, config.kernels) == ("step", 50, 0.1, (1, 3, 5))


def _tsin_fit(tmp_path, name, batch, dims, **changes):
    cls = HEADS["tsin"]
    config = dataclasses.replace(_config(cls, "full"), **changes)
    seed_everything(0)
    model = cls(config, dims, N_CLASSES)
    out = fit(model, [batch], [batch], config, list("abcd"), torch.device("cpu"), tmp_path / name,
              progress=False)
    return out, torch.load(tmp_path / name, weights_only=False)


def test_early_stopping_keeps_the_best_dev_epoch(tmp_path):
    batch, dims = _batch(HEADS["tsin"], _config(HEADS["tsin"], "full"))
    # A learning rate so small that the dev loss never improves after epoch 1.
    out, ckpt = _tsin_fit(tmp_path, "a.pt", batch, dims, epochs=50, lr=1e-30, patience=3,
                          select_metric="loss", schedule="none")
    assert len(out["history"]) == 4 and out["kept_epoch"] == 1 and ckpt["epoch"] == 1
    assert out["selected_on"] == "dev loss"


def test_average_last_keeps_the_mean_weights_of_the_last_epochs(tmp_path):
    cls = HEADS["tsin"]
    config = dataclasses.replace(_config(cls, "full"), epochs=4, average_last=3, dropout=0.0)
    batch, dims = _batch(cls, config)
    seed_everything(0)
    model = cls(config, dims, N_CLASSES)
    seen = []                           # the weights before each forward: one batch per epoch, no dev part
    model.register_forward_pre_hook(lambda m, _: seen.append({k: v.clone() for k, v in m.state_dict().items()}))
    out = fit(model, [batch], None, config, list("abcd"), torch.device("cpu"), tmp_path / "m.pt", progress=False)
    # The model now holds the mean; the last epoch's own weights come from a rerun without averaging.
    seed_everything(0)
    plain = cls(dataclasses.replace(config, average_last=0), dims, N_CLASSES)
    fit(plain, [batch], None, dataclasses.replace(config, average_last=0), list("abcd"), torch.device("cpu"),
        tmp_path / "p.pt", progress=False)
    epochs = [seen[i] for i in (2, 3)] + [plain.state_dict()]
    ckpt = torch.load(tmp_path / "m.pt", weights_only=False)["state_dict"]
    for k, v in ckpt.items():
        assert torch.allclose(v, sum(e[k] for e in epochs) / 3, atol=1e-6), k
    assert not all(torch.equal(ckpt[k], epochs[-1][k]) for k in ckpt)
    assert out["selected_on"] == "mean weights of the last 3 epochs (no dev part)"
    with pytest.raises(ConfigError, match="average_last"):
        _config(cls, "full", average_last=-1)
    assert _config(cls, "full", epochs=2, average_last=20).average_last == 20     # all epochs when fewer


def test_training_is_reproducible_for_a_seed(tmp_path):
    batch, dims = _batch(HEADS["tsin"], _config(HEADS["tsin"], "full"))
    a, ca = _tsin_fit(tmp_path, "a.pt", batch, dims, epochs=3, dropout=0.2)
    b, cb = _tsin_fit(tmp_path, "b.pt", batch, dims, epochs=3, dropout=0.2)
    assert a["history"] == b["history"]
    assert all(torch.equal(ca["state_dict"][k], cb["state_dict"][k]) for k in ca["state_dict"])
