"""handgrad's experiments: configs, datasets, the lockstep runner, metrics, reports, CLI."""
