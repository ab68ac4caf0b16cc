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


@pytest.fixture(scope="session")
def ray_cluster():
    """One local Ray for the whole session (starting Ray costs ~6 s and ~640 MiB)."""
    import os

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    os.environ.setdefault("RAY_CHDIR_TO_TRIAL_DIR", "0")
    import ray

    from study.sweep.runner import _ray_tmp

    ray.init(
        num_cpus=2,
        num_gpus=0,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
        object_store_memory=150 * 1024**2,
        _temp_dir=_ray_tmp(),
    )
    try:
        yield ray
    finally:
        ray.shutdown()
