"""trackd.integrations.keras.TrackdCallback in a real Keras 3 fit (the PyTorch backend)."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest
import trackd
from trackd.integrations.keras import TrackdCallback

from tests.frameworks.conftest import artifact_paths, assert_series, steps_of

pytestmark = pytest.mark.integration


def test_a_fit_logs_its_params_epoch_metrics_at_the_global_step_and_the_model(
        experiment: str, tmp_path: Path) -> None:
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 2)).astype("float32")
    y = x.sum(axis=1, keepdims=True)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(4, activation="tanh"), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.05), loss="mse")
    callback = TrackdCallback(experiment, run_name="tiny-keras", log_model=True)
    history = model.fit(x, y, batch_size=4, epochs=3, validation_data=(x[:8], y[:8]), verbose=0,
                        callbacks=[callback])
    run_id = callback.run.id
    callback.finish()

    info = trackd.get_run(run_id)
    assert info.status == "FINISHED"
    assert info.params["epochs"] == "3" and info.params["steps"] == "4"
    assert info.params["optimizer.class"] == "SGD"
    assert float(info.params["optimizer.learning_rate"]) == pytest.approx(0.05)
    assert info.params["model.parameters"] == str(model.count_params())
    for key in ("loss", "val_loss"):  # 4 batches an epoch: the global step after epoch e is 4(e+1)
        assert_series(run_id, key, list(zip([4, 8, 12], history.history[key], strict=True)))
    assert steps_of(run_id, "epoch") == [(4, 0.0), (8, 1.0), (12, 2.0)]
    assert artifact_paths(run_id, "model") == {"model/model.keras"}
    trackd.download_artifacts(run_id, "model", tmp_path / "download")
    loaded = keras.saving.load_model(tmp_path / "download" / "model.keras")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6)
