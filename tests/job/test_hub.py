"""The gated-model check: a token in the environment or the login's file, else one sentence on how to log in."""

from __future__ import annotations

from pathlib import Path

from ioncannon.job.hub import has_token, login_problem, token_file

FLUX = "black-forest-labs/FLUX.1-dev"


def test_a_token_in_the_environment_or_the_login_file_counts(tmp_path: Path) -> None:
    assert has_token({"HF_TOKEN": "hf_abc"}) and has_token({"HUGGING_FACE_HUB_TOKEN": "hf_abc"})
    assert not has_token({"HF_TOKEN": "  ", "HF_HOME": str(tmp_path)})
    assert token_file({"HF_HOME": str(tmp_path)}) == tmp_path / "token"
    (tmp_path / "token").write_text("hf_saved_by_login\n")
    assert has_token({"HF_HOME": str(tmp_path)})
    assert has_token({"HF_TOKEN_PATH": str(tmp_path / "token"), "HF_HOME": "/nowhere"})
    (tmp_path / "cache" / "huggingface").mkdir(parents=True)
    (tmp_path / "cache" / "huggingface" / "token").write_text("hf_x")
    assert has_token({"XDG_CACHE_HOME": str(tmp_path / "cache")})


def test_only_a_gated_model_without_a_token_is_a_problem_and_it_is_one_sentence(tmp_path: Path) -> None:
    nothing = {"HF_HOME": str(tmp_path)}
    problem = login_problem(FLUX, nothing)
    assert problem is not None and problem.count(". ") == 0 and problem.endswith(".")
    assert "huggingface.co/black-forest-labs/FLUX.1-dev" in problem and "hf auth login" in problem
    assert login_problem(FLUX, {"HF_TOKEN": "hf_abc"}) is None
    assert login_problem("stabilityai/stable-diffusion-xl-base-1.0", nothing) is None
    assert login_problem("/models/flux1-dev.safetensors", nothing) is None
