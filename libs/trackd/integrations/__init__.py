"""Native framework integrations: training code logs to trackd through its framework's own hooks.

    trackd.integrations.lightning.TrackdLogger        PyTorch Lightning's Logger API
    trackd.integrations.transformers.TrackdCallback   Hugging Face Trainer
    trackd.integrations.keras.TrackdCallback          Keras 3 (any backend)
    trackd.integrations.xgboost.TrackdCallback        xgboost.train / the scikit-learn API
    trackd.integrations.lightgbm.TrackdCallback       lightgbm.train / the scikit-learn API

Each logs the hyperparameters, the metrics at the framework's global step (through the run's
buffered writer: a point costs no round trip) and, with `log_model=True`, the trained model as a
`model` artifact. Each module imports its framework when it is imported itself, never before:
`import trackd` (the light client) needs none of them. See docs/integrations.md.
"""
