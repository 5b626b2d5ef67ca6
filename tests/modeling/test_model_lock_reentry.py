"""A thread that already holds the model takes it again without queueing (jobs wrap services that lock too)."""

import threading
import time

from tests.support.settings import make_settings

from neuronscope.modeling.manager import ModelManager


def test_reentrant_use_is_not_refused_while_the_queue_is_full(models_dir, tmp_path):
    manager = ModelManager(make_settings(tmp_path, models_dir, max_queued=1, queue_timeout=10.0))
    waited = threading.Event()

    def wait_for_the_model():
        with manager.use():
            waited.set()

    with manager.use() as outer:
        waiter = threading.Thread(target=wait_for_the_model)
        waiter.start()
        deadline = time.monotonic() + 10
        while manager._waiting < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert manager._waiting == 1  # the queue is full
        with manager.use() as inner:
            assert inner is outer
        assert not waited.is_set()
    waiter.join(timeout=10)
    assert waited.is_set()
