"""trackd.integrations.transformers.TrackdCallback in a real Hugging Face Trainer, on a tiny BERT
initialised at random from a config (nothing is downloaded)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import trackd
from trackd.integrations.transformers import TrackdCallback
from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments

from tests.frameworks.conftest import artifact_paths, assert_series, steps_of

pytestmark = pytest.mark.integration


class Sentences(torch.utils.data.Dataset[dict[str, torch.Tensor]]):
    def __init__(self, count: int) -> None:
        generator = torch.Generator().manual_seed(0)
        self.ids = torch.randint(0, 32, (count, 8), generator=generator)
        self.labels = (self.ids.sum(dim=1) % 2).long()

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[i], "attention_mask": torch.ones(8, dtype=torch.long), "labels": self.labels[i]}


def tiny_bert() -> Any:
    torch.manual_seed(0)
    config = BertConfig(vocab_size=32, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=16, max_position_embeddings=16, num_labels=2)
    return BertForSequenceClassification(config)


def test_a_trainer_logs_its_arguments_the_model_config_metrics_at_the_global_step_and_the_model(
        experiment: str, tmp_path: Path) -> None:
    callback = TrackdCallback(experiment, log_model=True)
    args = TrainingArguments(output_dir=str(tmp_path), run_name="tiny-bert", max_steps=6,
                             per_device_train_batch_size=4, learning_rate=1e-3, logging_steps=2,
                             eval_strategy="steps", eval_steps=3, save_strategy="no", report_to=[],
                             use_cpu=True, disable_tqdm=True, seed=0)
    trainer = Trainer(model=tiny_bert(), args=args, train_dataset=Sentences(24), eval_dataset=Sentences(8),
                      callbacks=[callback])
    trainer.train()
    run_id = callback.run.id
    callback.finish()

    info = trackd.get_run(run_id)
    assert info.name == "tiny-bert" and info.status == "FINISHED"
    assert info.params["learning_rate"] == "0.001" and info.params["max_steps"] == "6"
    assert info.params["model.hidden_size"] == "8" and info.params["model.model_type"] == "bert"
    history = trainer.state.log_history  # what the Trainer logged, each entry with its step
    for key in ("loss", "eval_loss"):
        expected = [(entry["step"], entry[key]) for entry in history if key in entry]
        assert_series(run_id, key, expected)
    assert [s for s, _ in steps_of(run_id, "loss")] == [2, 4, 6]
    assert [s for s, _ in steps_of(run_id, "eval_loss")] == [3, 6]
    saved = artifact_paths(run_id, "model")
    assert {"model/config.json", "model/model.safetensors"} <= saved, saved
