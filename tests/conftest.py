"""Shared test set-up: one torch thread (a 2-core machine with other processes running
slows multi-threaded small convolutions down several-fold), and the tests folder
importable as ``tests``."""

from __future__ import annotations

import torch

torch.set_num_threads(1)


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory):
    """A base-model cache holding the default tiny_cnn on digits, trained once per session."""
    from study.train import TrainConfig, load_or_train

    cache = tmp_path_factory.mktemp("models")
    load_or_train(TrainConfig("tiny_cnn", "digits", 0), cache)
    return cache
