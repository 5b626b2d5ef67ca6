"""Drive the frontend of a running server (e.g. the embedded model) through the end-to-end view
tests of ``tests/web/test_frontend_e2e.py`` and save a screenshot of each view; from the project
root::

    python -m scripts.screenshots --url http://127.0.0.1:5001 --out docs/screenshots
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from tests.support.browser import start_chromium
from tests.web.test_frontend_e2e import (
    SCREENSHOTS,
    Page,
    model_shape,
    test_activation_heatmap_shows_the_file_values,
    test_a_plan_that_breaks_the_model_is_red_and_apply_asks_first,
    test_clusters_view,
    test_compare_original_and_pruned_model_and_two_neurons,
    test_model_bar_shows_model_memory_and_registry,
    test_neuron_view_examples_weights_and_ablation,
    test_pruning_view_importance_and_batch,
    test_sweep_chart_on_a_log_scale_and_a_click_makes_that_plan,
    test_weights_view_charts_and_candidates_slider,
)


def main() -> int:
    parser = argparse.ArgumentParser(description="Drive the frontend of a running server and save a screenshot of each view.")
    parser.add_argument("--url", default="http://127.0.0.1:5001")
    parser.add_argument("--out", type=Path, default=SCREENSHOTS)
    parser.add_argument("--timeout", type=float, default=600, help="seconds to wait for one analysis")
    args = parser.parse_args()
    driver = start_chromium(Path(tempfile.mkdtemp(prefix="neuronscope-chromium-")))
    try:
        page = Page(driver, args.url.rstrip("/"), args.out, timeout=args.timeout)
        page.model = model_shape(page)
        for test in (test_model_bar_shows_model_memory_and_registry, test_activation_heatmap_shows_the_file_values,
                     test_neuron_view_examples_weights_and_ablation, test_weights_view_charts_and_candidates_slider,
                     test_pruning_view_importance_and_batch, test_clusters_view,
                     test_sweep_chart_on_a_log_scale_and_a_click_makes_that_plan,
                     test_a_plan_that_breaks_the_model_is_red_and_apply_asks_first,
                     test_compare_original_and_pruned_model_and_two_neurons):
            page.open()
            test(page)
            print(f"ok  {test.__name__}")
    finally:
        driver.quit()
    return 0


if __name__ == "__main__":
    sys.exit(main())
