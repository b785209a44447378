"""The discrete search over fixed layouts and adapter placements with Optuna: its space, config,
study storage, search loop, results table and the optuna-dashboard launcher."""
