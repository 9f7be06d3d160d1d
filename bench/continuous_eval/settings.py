"""The continuous-eval latency part's candidates, configurations, presets and goals (see bench/parts/continuous_eval.py)."""

from __future__ import annotations

from typing import Any, Dict

CONTROLLER_CANDIDATES = {"controller_p1.0": 1.0, "controller_p0.2": 0.2}
BASELINE_CANDIDATES = {"iterator_T1": 1.0, "iterator_T1_statcache": 1.0}
CANDIDATE_NOTES = {
    "controller_p1.0": "controller_core evaluate_continuously, poll 1.0 s (default)",
    "controller_p0.2": "controller_core evaluate_continuously, poll 0.2 s",
    "iterator_T1": "tf.train.checkpoints_iterator, timeout 1 s + timeout_fn (Model Garden rule)",
    "iterator_T1_statcache": "as iterator_T1, TF's default 5 s GCS stat cache",
}
CONFIGS = {
    "local": {"target": "local", "eval_sleep_s": 0.0,
              "note": "local disk, evaluation takes milliseconds"},
    "local_slow_eval": {"target": "local", "eval_sleep_s": 0.8,
                        "note": "local disk, evaluation takes 0.8 s (> the checkpoint interval)"},
    "gcs": {"target": "gcs", "eval_sleep_s": 0.0,
            "note": "gs:// through the GCS emulator (loopback TLS proxy → fake-gcs-server), evaluation takes ms"},
}
HEADLINE_CONFIG = "local"
SETTINGS: Dict[str, Dict[str, Any]] = {
    "tiny": {
        "reps": 1,
        "checkpoints": 3,
        "interval_s": 0.3,
        "configs": {"local": ("controller_p0.2", "iterator_T1")},
    },
    "quick": {
        "reps": 1,
        "checkpoints": 8,
        "interval_s": 0.45,
        "configs": {
            "local": ("controller_p1.0", "controller_p0.2", "iterator_T1"),
            "local_slow_eval": ("controller_p1.0", "iterator_T1"),
            "gcs": ("controller_p1.0", "controller_p0.2", "iterator_T1"),
        },
    },
    "full": {
        "reps": 3,
        "checkpoints": 10,
        "interval_s": 0.45,
        "configs": {
            "local": ("controller_p1.0", "controller_p0.2", "iterator_T1"),
            "local_slow_eval": ("controller_p1.0", "controller_p0.2", "iterator_T1"),
            "gcs": ("controller_p1.0", "controller_p0.2", "iterator_T1", "iterator_T1_statcache"),
        },
    },
}
NOTICED_GOAL_S = 1.0
EXIT_GOAL_S = 2.0
GOALS = {
    "checkpoint_noticed": "checkpoint noticed ≤ 1 s (median; checkpoint saved → its evaluation starts)",
    "exit_after_training": "final checkpoint to evaluator exit ≤ 2 s",
}
MODEL_DESCRIPTION = "64→32(relu)→10 MLP (tf_keras), Adam(1e-3), random data (batch 64 train, 256 rows eval)"
# The evaluator gets "go" this long before the trainer starts (it polls an empty directory meanwhile): a random
# lead, uniform over one 1 s poll period, so the trainer's checkpoints and its end fall at a random phase of the
# evaluator's polls in every run (a fixed lead repeats the same phase, so the same delays, run after run).
LEAD_MIN_S = 0.3
LEAD_SPAN_S = 1.0
LEAD_SEED = 0
READY_TIMEOUT_S = 300.0
EXIT_GRACE_S = 30.0  # After training: how long an evaluator may take to exit (+ its evaluation backlog).
MODEL_DIR_NAME = "run"
GCS_CACHE_VARS = ("GCS_STAT_CACHE_MAX_AGE", "GCS_MATCHING_PATHS_CACHE_MAX_AGE")
