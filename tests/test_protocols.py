"""Evaluation protocols: fold counts, disjointness, reproducibility, leakage."""
from __future__ import annotations

import dataclasses

import pytest
from heads_fake import fake_items

from heads.protocols import (Fold, LeakageError, Options, ProtocolError, assert_no_leakage,
                             check_leakage, make_folds)

ITEMS = fake_items(sessions=5, per_speaker=6)      # 5 sessions, 10 speakers, 60 items
BY_ID = {it.id: it for it in ITEMS}


def _covers_once(folds):
    tested = [i for f in folds for i in f.test]
    assert sorted(tested) == sorted(BY_ID)          # every item is tested exactly once


@pytest.mark.parametrize("protocol,attr,n", [("session", "session", 5), ("speaker", "speaker", 10)])
def test_leave_one_group_out(protocol, attr, n):
    folds, reports = make_folds(protocol, ITEMS)
    assert len(folds) == n and len(reports) == n
    _covers_once(folds)
    for fold, report in zip(folds, reports):
        assert report["ok"] and not fold.dev
        assert set(fold.train) | set(fold.test) == set(BY_ID)
        assert not set(fold.train) & set(fold.test)
        assert len({getattr(BY_ID[i], attr) for i in fold.test}) == 1
        assert not {getattr(BY_ID[i], attr) for i in fold.train} & {getattr(BY_ID[i], attr) for i in fold.test}


def test_dev_next_session_is_the_following_session():
    folds, _ = make_folds("session", ITEMS, Options(dev="next-session"))
    for k, fold in enumerate(folds):
        test_s = {BY_ID[i].session for i in fold.test}
        dev_s = {BY_ID[i].session for i in fold.dev}
        assert dev_s == {str((k + 1) % 5 + 1)} and not test_s & dev_s
        assert not {BY_ID[i].session for i in fold.train} & (test_s | dev_s)
        assert len(fold.train) + len(fold.dev) + len(fold.test) == len(ITEMS)


def test_dev_next_speaker_in_speaker_protocol():
    folds, _ = make_folds("speaker", ITEMS, Options(dev="next-speaker"))
    assert {BY_ID[i].speaker for i in folds[0].test} == {"1F"}
    assert {BY_ID[i].speaker for i in folds[0].dev} == {"1M"}
    assert {BY_ID[i].speaker for i in folds[-1].dev} == {"1F"}     # cyclic


def test_kfold_reproducible_and_seeded():
    a, _ = make_folds("kfold", ITEMS, Options(k=10, seed=3))
    b, _ = make_folds("kfold", ITEMS, Options(k=10, seed=3))
    c, _ = make_folds("kfold", ITEMS, Options(k=10, seed=4))
    assert len(a) == 10
    assert [f.test for f in a] == [f.test for f in b]
    assert [f.test for f in a] != [f.test for f in c]
    _covers_once(a)
    assert all(len(f.test) == 6 and len(f.train) == 54 for f in a)


def test_ratio_folds_3_1_1():
    folds, reports = make_folds("ratio", ITEMS, Options(ratios=(3, 1, 1), seed=0))
    assert len(folds) == 5 and all(r["ok"] for r in reports)
    _covers_once(folds)
    for f in folds:
        assert (len(f.train), len(f.dev), len(f.test)) == (36, 12, 12)
        assert not set(f.dev) & set(f.test) and not set(f.train) & (set(f.dev) | set(f.test))


def test_official_split_and_missing_tags():
    tagged = [dataclasses.replace(it, split=("test" if it.session == "5" else "val" if it.session == "4"
                                             else "train")) for it in ITEMS]
    (fold,), _ = make_folds("official", tagged)
    assert len(fold.test) == 12 and len(fold.dev) == 12 and len(fold.train) == 36
    with pytest.raises(ProtocolError, match="tagged"):
        make_folds("official", ITEMS)


def test_leakage_check_fails_loudly_on_a_leaky_split():
    ids = sorted(BY_ID)
    s1 = [i for i in ids if BY_ID[i].session == "1"]
    # A session on both sides, though no item is shared.
    leaky = Fold("leaky", train=[i for i in ids if i not in s1[:3]], test=s1[:3], group="session")
    report = check_leakage(leaky, BY_ID)
    assert not report["ok"] and "session 1 is in both train and test" in report["problems"]
    with pytest.raises(LeakageError, match="fold leaky leaks"):
        assert_no_leakage([leaky], ITEMS)
    # The same item in train and test.
    shared = Fold("shared", train=ids[:40], test=ids[39:])
    with pytest.raises(LeakageError, match="1 item"):
        assert_no_leakage([shared], ITEMS)


def test_bad_options():
    with pytest.raises(ProtocolError):
        make_folds("kfold", ITEMS, Options(k=1))
    with pytest.raises(ProtocolError):
        make_folds("kfold", ITEMS, Options(dev="next-session"))
    with pytest.raises(ProtocolError):
        make_folds("session", ITEMS, Options(dev="sideways"))
