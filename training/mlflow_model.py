"""The MLflow model, from code: MLflow logs this file, not a pickled object.

Loading it reads plain artifacts (booster text, calibrator and spec JSON, tier cut points,
rules YAML, the drift reference JSON) through `training.scorer`, which MLflow bundles with the
model (`code_paths`), so `mlflow.pyfunc.load_model` and `mlflow models serve` need nothing
unpickled. Input: feature rows as built by `features.pipeline.build_features`; output:
probability, tier, raw score.

MLflow executes this file on every load, so its own check (`load_context`) cannot vouch for
itself: leadscore's loaders check every file of the model, this one included, against the
digests its run recorded before MLflow runs it (`training.integrity.load_verified`).
"""

from __future__ import annotations

from typing import Any

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel, PythonModelContext


class LeadScoreModel(PythonModel):
    """Calibrated MQL-to-SQL probability and tier for feature rows."""

    def load_context(self, context: PythonModelContext) -> None:
        from pathlib import Path

        from training.integrity import DIGESTS_KEY, verify_artifacts
        from training.scorer import Scorer

        # nothing is parsed before every file matches the digests recorded at logging
        verify_artifacts(context.artifacts, (context.model_config or {}).get(DIGESTS_KEY))
        self.scorer = Scorer.from_files(context.artifacts)
        # the rules and the feature config travel with the model, for the scoring API, and
        # the drift reference (older models have none), for monitoring
        self.texts = {
            key: Path(context.artifacts[key]).read_text(encoding="utf-8")
            for key in ("rules", "config", "reference")
            if key in context.artifacts
        }

    def predict(
        self,
        context: PythonModelContext,
        model_input: pd.DataFrame,
        params: dict[str, Any] | None = None,
    ) -> pd.DataFrame:
        return self.scorer.score(model_input).reset_index(drop=True)


mlflow.models.set_model(LeadScoreModel())
