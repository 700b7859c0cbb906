"""JobPaths: every file and folder name of one job, here and nowhere else (DESIGN §3)."""

from __future__ import annotations

import os
from pathlib import Path

from ioncannon.job.validate import safe_component


class JobPaths:
    """Where everything of one job lives on disk (DESIGN §3)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    # what the user sees
    def training_samples(self, class_name: str) -> Path:
        return self.root / "training_samples" / safe_component(class_name, "class")

    def class_images(self, class_name: str) -> Path:
        return self.root / "class_images" / safe_component(class_name, "class")

    @property
    def trained_models(self) -> Path:
        return self.root / "trained_models"

    @property
    def outputs(self) -> Path:
        return self.root / "outputs"

    # the product's own bookkeeping
    @property
    def meta(self) -> Path:
        return self.root / ".ioncannon"

    @property
    def job_file(self) -> Path:
        return self.meta / "job.json"

    @property
    def state_file(self) -> Path:
        return self.meta / "state.json"

    @property
    def events_file(self) -> Path:
        return self.meta / "events.jsonl"

    @property
    def log_file(self) -> Path:
        return self.meta / "runner.log"

    @property
    def lock_file(self) -> Path:
        return self.meta / "lock"

    @property
    def checkpoints(self) -> Path:
        return self.meta / "checkpoints"

    @property
    def cache(self) -> Path:
        return self.meta / "cache"

    @property
    def previews(self) -> Path:
        return self.meta / "previews"

    @property
    def summary_file(self) -> Path:
        return self.meta / "summary.json"

    @property
    def starred_file(self) -> Path:
        return self.meta / "starred.json"

    @property
    def finish_file(self) -> Path:
        return self.meta / "finish.json"

    @property
    def prompt_pack_file(self) -> Path:
        """The job's own copy of the prompt pack the wizard edited."""
        return self.meta / "prompt_pack.toml"

    @property
    def trained(self) -> Path:
        """The trained weights' working copy, before export."""
        return self.meta / "trained"

    @property
    def train_plan_file(self) -> Path:
        return self.meta / "train_plan.json"

    @property
    def train_stats_file(self) -> Path:
        return self.meta / "train_stats.json"

    @property
    def estimate_file(self) -> Path:
        """Each stage's estimated seconds, recorded when the job was created (the finish screen compares)."""
        return self.meta / "estimate.json"

    @property
    def download_file(self) -> Path:
        return self.root / "DOWNLOAD.txt"

    @property
    def contact_sheet(self) -> Path:
        return self.outputs / "contact_sheet.jpg"

    def ensure(self) -> None:
        for p in (self.root, self.meta):
            p.mkdir(parents=True, exist_ok=True, mode=0o700)
        # private like the photos: everything under the job folder shows the subject or describes them
        os.chmod(self.root, 0o700)
        os.chmod(self.meta, 0o700)
