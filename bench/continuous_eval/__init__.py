"""The continuous-eval latency part's pieces: its settings, the trainer and evaluator processes it times, and its
summary, table and plots. The part itself (what runs them) is `bench.parts.continuous_eval`."""
