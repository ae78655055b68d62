"""What `/v1/model` shows of the served model's URI."""

from __future__ import annotations

from serving.model_store import shown_model_uri


def test_a_model_uri_is_shown_as_it_is_and_a_password_never() -> None:
    assert shown_model_uri("models:/leadscore@champion") == "models:/leadscore@champion"
    assert shown_model_uri("models:/leadscore/3") == "models:/leadscore/3"
    assert shown_model_uri("runs:/abc123/model") == "runs:/abc123/model"
    assert shown_model_uri("/srv/models/leadscore") == "/srv/models/leadscore"
    shown = shown_model_uri("https://ml:s3cret@mlflow.example.com:8443/models/leadscore")
    assert "s3cret" not in shown
    assert shown == "https://ml:***@mlflow.example.com:8443/models/leadscore"
