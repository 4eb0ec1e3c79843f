"""The run service: projects, experiments, runs and their lifecycle events."""
