"""trackd.integrations.xgboost and .lightgbm callbacks in real XGBoost and LightGBM trainings."""

from __future__ import annotations

from pathlib import Path

import lightgbm
import numpy as np
import pytest
import trackd
import xgboost
from trackd.integrations.lightgbm import TrackdCallback as LightGBMCallback
from trackd.integrations.xgboost import TrackdCallback as XGBoostCallback

from tests.frameworks.conftest import artifact_paths, assert_series

pytestmark = pytest.mark.integration


def regression() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 4))
    return x, x @ np.array([1.0, -2.0, 0.5, 0.0]) + rng.normal(scale=0.1, size=200)


def test_xgboost_logs_the_booster_params_each_rounds_evaluations_and_the_model(
        experiment: str, tmp_path: Path) -> None:
    x, y = regression()
    train, valid = xgboost.DMatrix(x[:150], label=y[:150]), xgboost.DMatrix(x[150:], label=y[150:])
    callback = XGBoostCallback(experiment, run_name="tiny-xgb", log_model=True)
    recorded: dict[str, dict[str, list[float]]] = {}
    booster = xgboost.train({"max_depth": 3, "eta": 0.3, "objective": "reg:squarederror", "eval_metric": "rmse",
                             "nthread": 1}, train, num_boost_round=5, evals=[(train, "train"), (valid, "valid")],
                            evals_result=recorded, callbacks=[callback], verbose_eval=False)
    run_id = callback.run.id
    callback.finish()

    params = trackd.get_run(run_id).params
    assert params["max_depth"] == "3" and float(params["eta"]) == pytest.approx(0.3)
    assert params["objective"] == "reg:squarederror" and params["eval_metric"] == "rmse"
    for data in ("train", "valid"):
        assert_series(run_id, f"{data}-rmse", list(enumerate(recorded[data]["rmse"])))
    assert artifact_paths(run_id, "model") == {"model/model.ubj"}
    trackd.download_artifacts(run_id, "model", tmp_path)
    loaded = xgboost.Booster(model_file=str(tmp_path / "model.ubj"))
    np.testing.assert_array_equal(loaded.predict(valid), booster.predict(valid))


def test_lightgbm_logs_the_params_each_iterations_evaluations_and_the_model(
        experiment: str, tmp_path: Path) -> None:
    x, y = regression()
    train = lightgbm.Dataset(x[:150], label=y[:150])
    valid = lightgbm.Dataset(x[150:], label=y[150:], reference=train)
    callback = LightGBMCallback(experiment, run_name="tiny-lgb", log_model=True)
    recorded: dict[str, dict[str, list[float]]] = {}
    booster = lightgbm.train({"objective": "regression", "num_leaves": 7, "learning_rate": 0.2, "verbose": -1,
                              "num_threads": 1}, train, num_boost_round=5, valid_sets=[train, valid],
                             valid_names=["train", "valid"],
                             callbacks=[callback, lightgbm.record_evaluation(recorded)])
    run_id = callback.run.id
    callback.finish()

    params = trackd.get_run(run_id).params
    assert params["num_leaves"] == "7" and params["learning_rate"] == "0.2" and params["objective"] == "regression"
    for data in ("train", "valid"):
        assert_series(run_id, f"{data}-l2", list(enumerate(recorded[data]["l2"])))
    assert artifact_paths(run_id, "model") == {"model/model.txt"}
    trackd.download_artifacts(run_id, "model", tmp_path)
    loaded = lightgbm.Booster(model_file=str(tmp_path / "model.txt"))
    np.testing.assert_allclose(loaded.predict(x[150:]), booster.predict(x[150:]))
