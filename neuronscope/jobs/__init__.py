"""Background jobs and the result cache: plain Python and threads, no Flask.

``job`` (state of one job), ``runner`` (queue, worker thread, history, cancellation),
``cache`` (LRU of results, keyed by the loaded model's identity), ``progress_log`` (progress in the log).
"""
