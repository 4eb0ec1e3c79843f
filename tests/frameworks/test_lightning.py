"""trackd.integrations.lightning.TrackdLogger in a real Lightning Trainer."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
import trackd
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import DataLoader, TensorDataset
from trackd.integrations.lightning import TrackdLogger

from tests.frameworks.conftest import artifact_paths, assert_series, steps_of

pytestmark = pytest.mark.integration


class Tiny(L.LightningModule):
    def __init__(self, lr: float = 0.05, hidden: int = 4) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = torch.nn.Sequential(torch.nn.Linear(2, hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, 1))

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], index: int) -> torch.Tensor:
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.net(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], index: int) -> None:
        x, y = batch
        self.log("val_loss", torch.nn.functional.mse_loss(self.net(x), y))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


def loaders() -> tuple[DataLoader[tuple[torch.Tensor, ...]], DataLoader[tuple[torch.Tensor, ...]]]:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(16, 2, generator=generator)
    y = x.sum(dim=1, keepdim=True)
    return DataLoader(TensorDataset(x, y), batch_size=4), DataLoader(TensorDataset(x[:8], y[:8]), batch_size=4)


def csv_series(path: Path, key: str) -> list[tuple[int, float]]:
    import csv

    with path.open() as f:
        return [(int(row["step"]), float(row[key])) for row in csv.DictReader(f) if row.get(key)]


def test_a_fit_logs_hyperparams_metrics_at_lightnings_steps_and_the_best_checkpoint(
        experiment: str, tmp_path: Path) -> None:
    logger = TrackdLogger(experiment, run_name="tiny-fit", log_model=True)
    csv = CSVLogger(tmp_path / "csv", name="reference")
    trainer = L.Trainer(max_epochs=2, logger=[logger, csv], log_every_n_steps=1, accelerator="cpu",
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    train, valid = loaders()
    trainer.fit(Tiny(lr=0.05, hidden=4), train, valid)
    run_id = logger.version
    logger.finish()

    info = trackd.get_run(run_id)
    assert info.name == "tiny-fit" and info.status == "FINISHED"
    assert info.params["lr"] == "0.05" and info.params["hidden"] == "4"
    reference = Path(csv.log_dir) / "metrics.csv"
    # every point Lightning gave its loggers, at the same steps as its own CSVLogger writes them
    assert_series(run_id, "train_loss", csv_series(reference, "train_loss"))
    assert [s for s, _ in steps_of(run_id, "train_loss")] == list(range(8))  # 16 samples / 4 per batch × 2 epochs
    assert_series(run_id, "val_loss", csv_series(reference, "val_loss"))
    assert [s for s, _ in steps_of(run_id, "val_loss")] == [3, 7]  # the end of each epoch
    checkpoint = Path(trainer.checkpoint_callback.best_model_path)
    assert artifact_paths(run_id, "model") == {f"model/{checkpoint.name}"}


def test_a_logger_given_a_run_logs_into_it_and_leaves_it_open(experiment: str, tmp_path: Path) -> None:
    with trackd.start_run(experiment, capture_env=False) as run:
        logger = TrackdLogger(run=run)
        trainer = L.Trainer(max_steps=3, logger=logger, log_every_n_steps=1, accelerator="cpu",
                            enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
                            default_root_dir=tmp_path)
        trainer.fit(Tiny(), loaders()[0])
        assert logger.version == run.id
        assert trackd.get_run(run.id).status == "RUNNING"
    assert [s for s, _ in steps_of(run.id, "train_loss")] == [0, 1, 2]
    assert artifact_paths(run.id, "model") == set()  # log_model was not asked
